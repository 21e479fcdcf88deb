package authz

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
)

// An Option configures an [Authorizer]: where its policy comes from
// (Files, FS, Module, Data, Rules, RulesJSON, RulesFile) and how it runs
// (the With… options). Sources add up; every With… option documents its
// default.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// DefaultQuery is the decision the Authorizer evaluates unless
// [WithQuery] names another one.
const DefaultQuery = "data.funcmesh.authz"

// MaxParamsDepth is how deeply arrays and objects may nest in params the
// middleware decodes.
const MaxParamsDepth = 64

// config is what the options set; its zero value plus defaults() is the
// default configuration.
type config struct {
	sources      []source
	query        string
	watch        bool
	logger       *slog.Logger
	decisionHook func(context.Context, DecisionInfo)
	reloadHook   func(error)
	claims       func(context.Context) (map[string]any, bool)
	route        func(*http.Request) (service, function string)
	headers      []string // lower case
	maxDecoding  int
	call         *policyCalls // WithCall
	errs         []error
}

// Files loads policy from files and directories, as opa eval -d does:
// .rego files are modules; .json and .yaml files are data documents, placed
// under data by their directory below the path given (policy/roles/x.json
// becomes data.roles). Directories are read recursively; files and
// directories whose names start with "." and test files (*_test.rego) are
// skipped. With [WithWatch], changes to them are loaded while running.
func Files(paths ...string) Option {
	return optionFunc(func(c *config) {
		for _, p := range paths {
			c.sources = append(c.sources, &fileSource{path: p})
		}
	})
}

// FS loads policy from paths (files or directories) in fsys, for example
// an embed.FS, the way [Files] does; with no paths it loads all of fsys.
// An FS is read again by [Authorizer.Reload] but not watched.
func FS(fsys fs.FS, paths ...string) Option {
	if len(paths) == 0 {
		paths = []string{"."}
	}
	return optionFunc(func(c *config) {
		for _, p := range paths {
			c.sources = append(c.sources, &fileSource{fsys: fsys, path: p})
		}
	})
}

// Module adds a Rego module given as a string; name is the file name used
// in error messages (say "policy.rego").
func Module(name, src string) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &moduleSource{name: name, src: src})
	})
}

// Data adds a data document, merged at the root of data: Data(map[string]any{
// "roles": …}) is data.roles. Documents from several sources merge; a
// conflict is an error.
func Data(doc map[string]any) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &dataSource{doc: doc})
	})
}

// Rules adds a rule config. The config is validated, decided with the
// meaning of the Rego module it compiles to (see [RuleConfig.Rego]), and
// checked before any Rego policy: a call the rules
// deny is denied with the rules' decision; a call they allow goes on to the
// Rego policy, when there is one. Several rule configs merge (see
// [ServiceRulesJSON]).
func Rules(cfg *RuleConfig) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &rulesSource{cfg: cfg})
	})
}

// RulesJSON is [Rules] with the config in its JSON form (see [ParseRules]).
func RulesJSON(data []byte) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &rulesSource{json: data})
	})
}

// ServiceRulesJSON adds the rules of one service in the form Space
// Cloud's documentation writes a service's config, {"functions": {...}}
// (see [ParseServiceRules]). Rules from several sources ([Rules],
// [RulesJSON], [RulesFile], [ServiceRulesJSON], [RulesDir]) merge into
// one config; a service that two of them define is an error.
func ServiceRulesJSON(service string, data []byte) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &serviceRulesSource{service: service, json: data})
	})
}

// RulesDir adds the rules of each service from a directory of
// <service>.json files, each in the form of [ServiceRulesJSON]; other
// files are skipped. With [WithWatch], changes to it are loaded while
// running.
func RulesDir(dir string) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &serviceRulesSource{dir: dir})
	})
}

// RulesFile is [Rules] with the config read from a JSON file; with
// [WithWatch], changes to it are loaded while running.
func RulesFile(path string) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &rulesSource{path: path})
	})
}

// WithQuery sets the decision to evaluate: a reference into data, either a
// package (whose rules allow, status, reason and headers make the
// decision object) or a rule whose value is a boolean or such an object.
// The default is [DefaultQuery], data.funcmesh.authz. It applies to Rego
// policies; a rule config always answers with its own decision.
func WithQuery(ref string) Option {
	return optionFunc(func(c *config) { c.query = ref })
}

// WithWatch makes the Authorizer watch the paths of [Files] and
// [RulesFile] and reload the policy when they change. A change that does
// not load (a syntax error, a rule config that does not validate, a file
// of 0 bytes) keeps the policy in use and is reported to the reload hook
// and the logger; so does a change after which a file the policy in use
// was read from is missing ([ErrIncomplete]), until it is back. The
// default is not to watch; [Authorizer.Close] stops watching.
func WithWatch(on bool) Option {
	return optionFunc(func(c *config) { c.watch = on })
}

// WithLogger sets the logger for reload failures and evaluation errors.
// The default, nil, logs nothing.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithDecisionHook calls hook with every decision made, by the middleware
// and by [Authorizer.Authorize], for logs and metrics. The hook runs on the
// request's goroutine and must be quick. The default is no hook.
func WithDecisionHook(hook func(context.Context, DecisionInfo)) Option {
	return optionFunc(func(c *config) { c.decisionHook = hook })
}

// WithReloadHook calls hook after every reload, watched or through
// [Authorizer.Reload], with nil when the new policy is in use and the
// error when the old one was kept. The default is no hook.
func WithReloadHook(hook func(err error)) Option {
	return optionFunc(func(c *config) { c.reloadHook = hook })
}

// WithClaims sets how the middleware finds the caller's verified claims
// in the request's context; ok false means an anonymous caller. The
// default is [reqctx.Claims], where the funcmesh JWT middleware (or any
// code calling [reqctx.WithClaims]) puts them.
func WithClaims(claims func(ctx context.Context) (map[string]any, bool)) Option {
	return optionFunc(func(c *config) { c.claims = claims })
}

// WithRoute sets how the middleware finds the service and function of a
// request. The default reads the path values "service" and "function",
// as set by a net/http pattern like "POST /fn/{service}/{function}".
func WithRoute(route func(r *http.Request) (service, function string)) Option {
	return optionFunc(func(c *config) { c.route = route })
}

// WithHeaders sets the request headers the middleware copies to
// input.http.headers, keyed by lower-case name, with several values joined
// by ", ". The default is none. Authorization, Cookie,
// Proxy-Authorization and Mesh-* headers are never copied; naming one is
// an error.
func WithHeaders(names ...string) Option {
	return optionFunc(func(c *config) {
		for _, n := range names {
			ln := strings.ToLower(n)
			switch {
			case !validHeaderName(n):
				c.errs = append(c.errs, fmt.Errorf("authz: WithHeaders: %q is not a header name", n))
			case ln == "authorization" || ln == "cookie" || ln == "proxy-authorization" || strings.HasPrefix(ln, "mesh-"):
				c.errs = append(c.errs, fmt.Errorf("authz: WithHeaders: %s carries credentials or mesh data and is never given to the policy", n))
			default:
				c.headers = append(c.headers, ln)
			}
		}
	})
}

// DefaultMaxDecoding is how many calls may have their params decoded and
// decided at once unless [WithMaxDecoding] sets another bound.
const DefaultMaxDecoding = 64

// WithMaxDecoding bounds how many calls may have their params decoded and
// decided at once; another call that needs its params decoded is
// answered 429 (by the middleware) or denied with a
// resource_exhausted error (by [Authorizer.Authorize]) without being
// decoded. Together with the body limit and the bound on what one
// decoding may take (the parts of the params the policy reads; params
// read whole at most 24 times their size), this bounds the memory that
// authorization takes, for callers who need not be signed in. The bound
// is taken after the body is read, and given back when the decision is
// made. The default is [DefaultMaxDecoding].
func WithMaxDecoding(n int) Option {
	return optionFunc(func(c *config) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("authz: WithMaxDecoding(%d): want a positive bound", n))
			return
		}
		c.maxDecoding = n
	})
}

// defaultConfig is the configuration of a nil Authorizer's middleware.
var defaultConfig = func() config {
	var c config
	c.defaults()
	return c
}()

func (c *config) defaults() {
	c.query = DefaultQuery
	c.maxDecoding = DefaultMaxDecoding
	c.route = pathValues
}

func pathValues(r *http.Request) (string, string) {
	return r.PathValue("service"), r.PathValue("function")
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
