package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/funcmesh/funcmesh/transport"
)

// Defaults, each documented on the option that changes it.
const (
	// DefaultTimeout is the deadline a call gets when the caller gave none:
	// a Client uses it when the context has no deadline, a Service when a
	// request carries no Mesh-Deadline header.
	DefaultTimeout = 10 * time.Second

	// DefaultMaxConcurrency is how many calls one service instance runs at
	// once before it answers 429.
	DefaultMaxConcurrency = 100

	// DefaultMaxAttempts is how many times a Client sends a call that
	// service instances refuse with 429 (at capacity): the first attempt
	// and four retries. NATS picks the instance of each attempt at random,
	// so with one busy instance out of k the call fails only if all four
	// retries land on it: 1 in k⁴ (1 in 16 for two instances). A refusal
	// costs one round trip and no work, so retrying is cheap.
	DefaultMaxAttempts = 5

	// DefaultVersion is the micro service version of a Service without
	// [WithVersion].
	DefaultVersion = "0.0.0"
)

// ClientOption configures the side of the mesh that makes calls: a
// [Client] (and so a [Gateway], see [NewGateway]), a [Discovery] and a
// [Router]. Each option's documentation says which of them it configures;
// a constructor given one that does not configure it returns an error
// naming the option.
type ClientOption interface {
	clientOption() *option
}

// ServiceOption configures a [Service] (see [NewService]).
type ServiceOption interface {
	serviceOption() *option
}

// Option configures both sides: it is a ClientOption and a ServiceOption.
type Option interface {
	ClientOption
	ServiceOption
}

type clientConfig struct {
	conns       []*nats.Conn
	prefix      string
	callPrefix  string
	signer      *transport.ClaimsSigner
	router      *Router
	timeout     time.Duration
	maxAttempts int
	tracer      trace.TracerProvider
	metrics     *Metrics
	logger      *slog.Logger
	err         error
}

type serviceConfig struct {
	prefix         string
	callPrefix     string
	router         *Router
	timeout        time.Duration
	maxConcurrency int
	version        string
	description    string
	metadata       map[string]string
	tracer         trace.TracerProvider
	metrics        *Metrics
	logger         *slog.Logger
	onError        func(context.Context, *Call, error)
	err            error
}

type discoveryConfig struct {
	prefix       string
	window       time.Duration
	refresh      time.Duration
	probeTimeout time.Duration
	err          error
}

func (c *clientConfig) fail(err error)    { c.err = errors.Join(c.err, err) }
func (c *serviceConfig) fail(err error)   { c.err = errors.Join(c.err, err) }
func (c *discoveryConfig) fail(err error) { c.err = errors.Join(c.err, err) }
func (c *routerConfig) fail(err error)    { c.err = errors.Join(c.err, err) }

// option is every option: its name, for errors, what is wrong with its
// argument (nil when nothing), and what it sets in each configuration it
// applies to (nil where it does not apply).
type option struct {
	name      string
	err       error
	client    func(*clientConfig)
	service   func(*serviceConfig)
	discovery func(*discoveryConfig)
	router    func(*routerConfig)
}

func (o *option) clientOption() *option  { return o }
func (o *option) serviceOption() *option { return o }

// apply applies opts to cfg with the setter pick finds in each; an option
// without one is an error naming it and what, which the constructor
// returns.
func apply[C any](opts []*option, cfg *C, fail func(error), pick func(*option) func(*C), what string) {
	for _, o := range opts {
		if set := pick(o); set != nil {
			if o.err != nil {
				fail(o.err)
			}
			set(cfg)
		} else {
			fail(fmt.Errorf("mesh: %s does not configure a %s", o.name, what))
		}
	}
}

// errorIf returns err when bad, else nil.
func errorIf(bad bool, err error) error {
	if bad {
		return err
	}
	return nil
}

// clientSide and serviceSide are the options given, nil ones left out.
func clientSide(opts []ClientOption) []*option {
	out := make([]*option, 0, len(opts))
	for _, o := range opts {
		if o != nil {
			out = append(out, o.clientOption())
		}
	}
	return out
}

func serviceSide(opts []ServiceOption) []*option {
	out := make([]*option, 0, len(opts))
	for _, o := range opts {
		if o != nil {
			out = append(out, o.serviceOption())
		}
	}
	return out
}

// WithPrefix sets the first token(s) of every function subject,
// prefix.service.function. The default is [transport.DefaultPrefix], "fn".
// It configures every Client, Service, Discovery and Router; all of one
// deployment must use the same prefix.
func WithPrefix(prefix string) Option {
	var err error
	if e := transport.ValidatePrefix(prefix); e != nil {
		err = fmt.Errorf("mesh: %w", e)
	}
	return &option{
		name:      "WithPrefix",
		err:       err,
		client:    func(c *clientConfig) { c.prefix = prefix },
		service:   func(c *serviceConfig) { c.prefix = prefix },
		discovery: func(c *discoveryConfig) { c.prefix = prefix },
		router:    func(c *routerConfig) { c.prefix = prefix },
	}
}

// WithCallPrefix sets the first token(s) of the call route's subjects,
// callprefix.caller.service.function, on which functions make nested calls
// and routers take them (see [Router]). The default is
// [transport.DefaultCallPrefix], "call". It must not overlap the function
// prefix ([transport.ValidateCallPrefix]); every client, service and router
// of one deployment, and the broker's ServiceAuth (package broker), must use the
// same one.
func WithCallPrefix(prefix string) Option {
	var err error
	if e := transport.ValidatePrefix(prefix); e != nil {
		err = fmt.Errorf("mesh: call prefix: %w", e)
	}
	return &option{
		name:    "WithCallPrefix",
		err:     err,
		client:  func(c *clientConfig) { c.callPrefix = prefix },
		service: func(c *serviceConfig) { c.callPrefix = prefix },
		router:  func(c *routerConfig) { c.callPrefix = prefix },
	}
}

// WithLocalRouter makes the nested calls of a Service (or of a Client used
// with a function's context) that runs in the host process, on a host
// connection, pass r in the process instead of through the broker: r makes
// the same checks and asks the same policy as for a call on the call route,
// then the call goes straight to the function and its answer straight back
// (two trips through the broker instead of four). The calling service is
// the name the Service was given, which only the host process can vouch
// for: use it only for services in the host process. The default is nil:
// every nested call goes through the call route.
func WithLocalRouter(r *Router) Option {
	return &option{
		name:    "WithLocalRouter",
		client:  func(c *clientConfig) { c.router = r },
		service: func(c *serviceConfig) { c.router = r },
	}
}

// WithClaimsSigner gives a Client (the gateway's) or a Router the host's
// claims signer. A Client signs the claims it sends with each call it makes
// outside a function (Mesh-Auth-Sig, bound to the claims, the request ID
// and the deadline), so that the function called can pass them on to the
// functions it calls; a Router verifies the signature of the claims a
// nested call carries and signs them again for the call it forwards. A
// Router requires one; a Client without one sends the claims unsigned, and
// routers then refuse nested calls that pass them on (401).
func WithClaimsSigner(s *transport.ClaimsSigner) ClientOption {
	return &option{
		name:   "WithClaimsSigner",
		client: func(c *clientConfig) { c.signer = s },
		router: func(c *routerConfig) { c.signer = s },
	}
}

// WithTimeout sets the deadline of a call whose caller gave none: for a
// Client, a context without a deadline; for a Service, a request without a
// Mesh-Deadline header; for a Router, the longest deadline a nested call
// without signed claims may ask for (with signed claims, the deadline they
// were signed for bounds it). The default is [DefaultTimeout]. d must be
// positive.
func WithTimeout(d time.Duration) Option {
	return &option{
		name:    "WithTimeout",
		err:     errorIf(d <= 0, fmt.Errorf("mesh: timeout %v: must be positive", d)),
		client:  func(c *clientConfig) { c.timeout = d },
		service: func(c *serviceConfig) { c.timeout = d },
		router:  func(c *routerConfig) { c.timeout = d },
	}
}

// WithTracerProvider makes a Client start a client span per call ("call
// service.function", a child of the span in the call's context) and a
// Service a server span per call ("serve service.function", a child of the
// caller's span carried in the traceparent header), in the context the
// function gets, so nested calls continue the trace. nil, the default,
// starts no spans; the W3C trace context in a call's context is still
// carried over NATS either way.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return &option{
		name:    "WithTracerProvider",
		client:  func(c *clientConfig) { c.tracer = tp },
		service: func(c *serviceConfig) { c.tracer = tp },
	}
}

// WithMetrics makes a Client or a Service count its calls in m (see
// [Metrics]); nil, the default, counts nothing.
func WithMetrics(m *Metrics) Option {
	return &option{
		name:    "WithMetrics",
		client:  func(c *clientConfig) { c.metrics = m },
		service: func(c *serviceConfig) { c.metrics = m },
	}
}

// WithMaxAttempts sets how many times a Client sends a call that service
// instances refuse with 429 because they are at their concurrency limit.
// Such a refusal means the function did not run, so sending the call again
// is safe; NATS delivers each attempt to an instance of the queue group
// picked at random, which may be the same busy one. A call that reached no
// instance at all (NATS "no responders") is sent again the same way, at
// once: while a cluster node stops, the broker can answer so for a moment
// although other instances run; when none runs, the attempts take a round
// trip each and the call still fails at once with 503. Attempts stop at the
// call's deadline. The default is [DefaultMaxAttempts]; 1 disables
// retries.
func WithMaxAttempts(n int) ClientOption {
	return &option{name: "WithMaxAttempts", err: errorIf(n < 1, fmt.Errorf("mesh: max attempts %d: must be at least 1", n)),
		client: func(c *clientConfig) { c.maxAttempts = n }}
}

// WithConns makes a Client spread its calls over more connections besides
// the one given to [NewClient] (or [NewGateway]): each call goes out on one
// of them picked at random, or on the next connected one when that one is
// not connected. nats.go reads every reply of a connection on one
// goroutine and writes every request under one lock, so at high call
// rates with many callers at once one connection is the bottleneck
// (docs/performance.md has the figures).
// The connections must reach the same NATS deployment as the first; the
// client does not close them. The default is none: every call uses the
// one connection.
func WithConns(conns ...*nats.Conn) ClientOption {
	conns = slices.Clone(conns)
	return &option{name: "WithConns", client: func(c *clientConfig) { c.conns = append(c.conns, conns...) }}
}

// WithMaxConcurrency bounds how many calls one Service instance runs at
// once, over all its functions. A call above the bound is answered 429
// (transport.CodeResourceExhausted) at once, without running the function,
// and a Client retries it (see [WithMaxAttempts]). The default is
// [DefaultMaxConcurrency]; n must be positive.
func WithMaxConcurrency(n int) ServiceOption {
	return &option{name: "WithMaxConcurrency", err: errorIf(n < 1, fmt.Errorf("mesh: max concurrency %d: must be at least 1", n)),
		service: func(c *serviceConfig) { c.maxConcurrency = n }}
}

// WithVersion sets the service version that discovery and "nats micro"
// show; it must be a semantic version. The default is [DefaultVersion].
func WithVersion(v string) ServiceOption {
	return &option{name: "WithVersion", service: func(c *serviceConfig) { c.version = v }}
}

// WithDescription sets the service description that discovery shows.
func WithDescription(d string) ServiceOption {
	return &option{name: "WithDescription", service: func(c *serviceConfig) { c.description = d }}
}

// WithMetadata sets the service metadata that discovery shows. The map is
// copied.
func WithMetadata(md map[string]string) ServiceOption {
	md = maps.Clone(md)
	return &option{name: "WithMetadata", service: func(c *serviceConfig) { c.metadata = md }}
}

// WithLogger is where the mesh reports what callers never see: a Service
// the text of plain errors its functions return and the panics they
// raise, with the request ID and stack; a Gateway (through its Client,
// see [NewGateway]) the causes of the server errors (5xx) it answers,
// with the request ID; a Router the nested calls it refused without an
// answer (a reply subject outside the caller's inbox). nil, the default,
// is silent.
func WithLogger(l *slog.Logger) Option {
	return &option{
		name:    "WithLogger",
		client:  func(c *clientConfig) { c.logger = l },
		service: func(c *serviceConfig) { c.logger = l },
		router:  func(c *routerConfig) { c.logger = l },
	}
}

// WithErrorHook makes a Service call f for every call that fails with a
// server error (5xx), except a function returning its context's error once
// the deadline passed: err is the function's error, or a [*PanicError] for
// a panic. f runs on the call's goroutine before the reply is sent; it
// must not block for long.
func WithErrorHook(f func(ctx context.Context, c *Call, err error)) ServiceOption {
	return &option{name: "WithErrorHook", service: func(c *serviceConfig) { c.onError = f }}
}

// WithDiscoveryWindow sets how long [Discovery.Services] collects replies
// from service instances. The default is 250ms.
func WithDiscoveryWindow(d time.Duration) ClientOption {
	return &option{name: "WithDiscoveryWindow", err: errorIf(d <= 0, fmt.Errorf("mesh: discovery window %v: must be positive", d)),
		discovery: func(c *discoveryConfig) { c.window = d }}
}

// WithRefreshInterval sets how long a Discovery reuses what it learned:
// the listing its HTTP handler serves and the answer to "does this service
// run?" the Gateway asks when no instance answers a call. The default is
// 2s.
func WithRefreshInterval(d time.Duration) ClientOption {
	return &option{name: "WithRefreshInterval", err: errorIf(d <= 0, fmt.Errorf("mesh: refresh interval %v: must be positive", d)),
		discovery: func(c *discoveryConfig) { c.refresh = d }}
}

// WithProbeTimeout bounds how long [Discovery.Running] waits for an
// instance of a service to answer. The default is 1s; a probe ends at the
// first answer, or at once when no instance is there at all, so the bound
// only matters for instances slow to answer.
func WithProbeTimeout(d time.Duration) ClientOption {
	return &option{name: "WithProbeTimeout", err: errorIf(d <= 0, fmt.Errorf("mesh: probe timeout %v: must be positive", d)),
		discovery: func(c *discoveryConfig) { c.probeTimeout = d }}
}
