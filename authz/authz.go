package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// ErrNotReady is returned (wrapped) by an Authorizer that has no policy:
// the zero Authorizer, or a nil one. It denies every call.
var ErrNotReady = errors.New("authz: no policy loaded")

// Authorizer decides whether calls may be made, by evaluating a Rego
// policy, a rule config, or both, prepared once per load. It is safe for
// concurrent use; a reload swaps the whole policy at once. Create one
// with [New]; the zero Authorizer denies everything.
type Authorizer struct {
	cfg     config
	current atomic.Pointer[policy]

	reloadMu sync.Mutex // serializes reloads
	watch    *watcher   // nil unless WithWatch

	decoding atomic.Int64 // decisions decoding params now (see WithMaxDecoding)
}

// errBusy answers a call when every decoding slot is taken.
var errBusy = transport.NewError(transport.CodeResourceExhausted, "too many calls being authorized, try again")

// acquire takes a decoding slot, or reports that none is free. A nil
// Authorizer has no policy, and nothing to decode.
func (a *Authorizer) acquire() bool {
	if a == nil {
		return true
	}
	if a.decoding.Add(1) > int64(a.cfg.maxDecoding) {
		a.decoding.Add(-1)
		return false
	}
	return true
}

func (a *Authorizer) release() {
	if a != nil {
		a.decoding.Add(-1)
	}
}

// New loads and compiles the policy from the sources among opts (see
// [Files], [FS], [Module], [Data], [Rules], [RulesJSON], [RulesFile]) and
// prepares its query. It fails when a source does not load, a module does
// not compile, the rule config does not validate, the query names nothing
// the policy defines, or there is no policy at all ([ErrNoPolicy]). With
// [WithWatch] it starts watching the policy's files; call Close to stop.
func New(ctx context.Context, opts ...Option) (*Authorizer, error) {
	a := &Authorizer{}
	a.cfg.defaults()
	for _, o := range opts {
		o.apply(&a.cfg)
	}
	if a.cfg.claims == nil {
		a.cfg.claims = reqctx.Claims
	}
	if a.cfg.route == nil {
		a.cfg.route = pathValues
	}
	if err := errors.Join(a.cfg.errs...); err != nil {
		return nil, err
	}
	if _, err := parseQuery(a.cfg.query); err != nil {
		return nil, err
	}
	p, err := a.load(ctx, false)
	if err != nil {
		return nil, err
	}
	a.current.Store(p)
	if a.cfg.watch {
		if a.watch, err = startWatcher(a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// load loads and compiles the policy. With whole, it refuses a set that
// lacks a file the policy in use was read from.
func (a *Authorizer) load(ctx context.Context, whole bool) (*policy, error) {
	l, err := loadSources(a.cfg.sources)
	if err != nil {
		return nil, err
	}
	if old := a.current.Load(); whole && old != nil {
		if missing := l.missingFiles(old.files); len(missing) > 0 {
			return nil, fmt.Errorf("%w: %s", ErrIncomplete, strings.Join(missing, ", "))
		}
	}
	p, err := compilePolicy(ctx, l, a.cfg.query)
	if err != nil {
		return nil, err
	}
	p.files = l.files
	return p, nil
}

// ErrIncomplete is returned (wrapped) by a reload the watcher made when a
// file the policy in use was read from is missing: a data document or
// module deleted, renamed, or in the middle of an editor's save. Loading
// the rest could widen what is allowed (allow if not data.blocklist[…]
// allows everyone once the blocklist is gone), so the policy in use stays
// until the file is back; to drop a file on purpose, call
// [Authorizer.Reload].
var ErrIncomplete = errors.New("authz: a policy file is missing; keeping the policy in use")

// Reload loads and compiles the policy again from its sources and, when
// that succeeds, puts it in use; otherwise the policy in use stays and the
// error is returned. Either way the reload hook is called and a failure is
// logged. Reload takes the files as they are: unlike the reloads watching
// makes, it accepts a set from which files were removed.
func (a *Authorizer) Reload(ctx context.Context) error {
	return a.reload(ctx, false)
}

func (a *Authorizer) reload(ctx context.Context, whole bool) error {
	if a == nil || a.current.Load() == nil {
		return ErrNotReady
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	p, err := a.load(ctx, whole)
	if err == nil {
		a.current.Store(p)
	} else if a.cfg.logger != nil {
		a.cfg.logger.LogAttrs(ctx, slog.LevelError, "authz: reload failed; keeping the policy in use", slog.Any("error", err))
	}
	if a.cfg.reloadHook != nil {
		a.cfg.reloadHook(err)
	}
	return err
}

// Close stops watching the policy's files. The Authorizer keeps deciding
// with the policy in use.
func (a *Authorizer) Close() error {
	if a == nil || a.watch == nil {
		return nil
	}
	return a.watch.close()
}

// Authorize decides whether the call in may be made, for code that calls
// functions outside the HTTP middleware: a service authorizing a call
// another function makes (with in.Caller set), say. A denial is a Decision
// with Allow false and a nil error (see [Decision.Err]); the error is for
// calls that could not be decided (invalid names, an evaluation error, a
// done ctx, no policy), and the decision then denies too. When in.Caller
// is nil, the calling function in ctx ([reqctx.Caller]) is used. Errors
// are *transport.Error values whose message is safe to show; the cause they
// wrap is not.
func (a *Authorizer) Authorize(ctx context.Context, in Input) (Decision, error) {
	if err := validateNames(in.Service, in.Function); err != nil {
		return Decision{Status: http.StatusBadRequest}, err
	}
	if c, ok := reqctx.Caller(ctx); ok && in.Caller == nil {
		in.Caller = &c // the calling function, as a router puts it in ctx
	}
	var p *policy
	if a != nil {
		p = a.current.Load()
	}
	return a.decide(ctx, p, &in, nil, nil)
}

func validateNames(service, function string) error {
	if err := transport.ValidateName(service); err != nil {
		return transport.WrapError(transport.CodeInvalidArgument, "invalid service name", err)
	}
	if err := transport.ValidateName(function); err != nil {
		return transport.WrapError(transport.CodeInvalidArgument, "invalid function name", err)
	}
	return nil
}

// decide evaluates p for in; params, when not nil, is input.params already
// decoded, and pl, when not nil, the plan already made. Every path out of
// it denies unless the policy allowed.
func (a *Authorizer) decide(ctx context.Context, p *policy, in *Input, params ast.Value, pl *plan) (Decision, error) {
	var start time.Time
	if a.hook() != nil {
		start = time.Now()
	}
	d, err := a.evaluate(a.policyContext(ctx, in), p, in, params, pl)
	return a.report(ctx, in, start, d, err)
}

// report hands a decision to the hook, and turns an evaluation error into
// a denial and an error that is safe to show, after logging it.
func (a *Authorizer) report(ctx context.Context, in *Input, start time.Time, d Decision, err error) (Decision, error) {
	hook := a.hook()
	if err != nil {
		code := transport.CodeOf(ctx.Err())
		switch {
		case errors.Is(err, errBusy):
			code = transport.CodeResourceExhausted
		case code == "":
			code = transport.CodeInternal
		}
		if code == transport.CodeInternal {
			if l := a.logger(); l != nil {
				l.LogAttrs(ctx, slog.LevelError, "authz: no decision; denying",
					slog.String("service", in.Service), slog.String("function", in.Function), slog.Any("error", err))
			}
		}
		d = Decision{Status: code.HTTPStatus()}
		if hook != nil {
			hook(ctx, DecisionInfo{Service: in.Service, Function: in.Function, Status: d.Status, Duration: time.Since(start), Err: err})
		}
		return d, transport.WrapError(code, transport.DefaultMessage(code), err)
	}
	if hook != nil {
		hook(ctx, DecisionInfo{
			Service: in.Service, Function: in.Function,
			Allow: d.Allow, Status: d.Status, Reason: d.Reason,
			Duration: time.Since(start),
		})
	}
	return d, nil
}

func (a *Authorizer) hook() func(context.Context, DecisionInfo) {
	if a == nil {
		return nil
	}
	return a.cfg.decisionHook
}

func (a *Authorizer) logger() *slog.Logger {
	if a == nil {
		return nil
	}
	return a.cfg.logger
}

func (a *Authorizer) evaluate(ctx context.Context, p *policy, in *Input, params ast.Value, pl *plan) (Decision, error) {
	if p == nil {
		return Decision{}, ErrNotReady
	}
	if pl == nil {
		planned := p.plan(in.Service, in.Function)
		pl = &planned
	}
	if params == nil && pl.uses.has("params") {
		if raw, ok := in.Params.(json.RawMessage); ok && len(raw) > 0 {
			if !a.acquire() {
				return Decision{}, errBusy
			}
			defer a.release()
		}
		whole, paths := pl.uses.below("params")
		var err error
		if params, err = paramsValue(in.Params, newReadTree(whole, paths), !pl.uses.eager); err != nil {
			return Decision{}, err
		}
	}
	if pl.rule != nil {
		d, err := p.rules.decide(ctx, pl.rule, in, params)
		if err != nil {
			return Decision{}, fmt.Errorf("authz: rule config: %w", err)
		}
		if !d.Allow {
			return d, nil
		}
	}
	if p.user == nil {
		return Decision{Allow: true}, nil
	}
	input, err := in.value(pl.uses, params)
	if err != nil {
		return Decision{}, err
	}
	return p.user.decide(ctx, input, a.logger())
}
