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
	p, err := compilePolicy(ctx, l, a.cfg.query, a.cfg.logger)
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
// functions outside the HTTP middleware: the mesh authorizing a call one
// function makes to another, say. It is the one entry point for such
// calls, and costs what a middleware decision costs: give the params as
// json.RawMessage (the bytes of the call) and only what the policy reads
// of them is decoded, under the [WithMaxDecoding] bound. When in.Caller
// is nil, the caller in ctx ([reqctx.Caller]) is input.caller. A denial
// is a Decision with Allow false and a nil error (see [Decision.Err]);
// the error is for calls that could not be decided (invalid names, an
// evaluation error, a done ctx, no policy, no decoding slot free), and
// the decision then denies too. Errors are *transport.Error values whose
// message is safe to show; the cause they wrap is not.
func (a *Authorizer) Authorize(ctx context.Context, in Input) (Decision, error) {
	if err := validateNames(in.Service, in.Function); err != nil {
		return Decision{Status: http.StatusBadRequest}, err
	}
	if in.Caller == nil {
		in.Caller = callerOf(ctx)
	}
	var p *policy
	if a != nil {
		p = a.current.Load()
	}
	return a.decide(ctx, p, &in, nil, nil, false)
}

// callerOf returns the caller in ctx ([reqctx.Caller]), nil for none.
func callerOf(ctx context.Context) *transport.Caller {
	c, ok := reqctx.Caller(ctx)
	if !ok {
		return nil // and no allocation: &c would move c to the heap on every call
	}
	p := new(transport.Caller)
	*p = c
	return p
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

// decide evaluates p for in; cp, when not nil, is the plan already made,
// and params (with have) input.params already decoded as far as the
// plan reads it. Every path out of it denies unless the policy allowed.
func (a *Authorizer) decide(ctx context.Context, p *policy, in *Input, cp *callPlan, params any, have bool) (Decision, error) {
	var start time.Time
	if a.hook() != nil {
		start = time.Now()
	}
	ctx = a.policyContext(ctx, in)
	d, err := a.evaluate(ctx, p, in, cp, params, have)
	if check := differential; check != nil && p != nil && !errors.Is(err, errBusy) {
		sd, serr := p.slowDecide(ctx, in)
		check(*in, d, err, sd, serr)
	}
	return a.report(ctx, in, start, d, err)
}

// differential, when set (by the tests), is given each decision made
// and the one plain evaluation of the whole policy makes for the same
// call.
var differential func(in Input, fast Decision, fastErr error, slow Decision, slowErr error)

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

func (a *Authorizer) evaluate(ctx context.Context, p *policy, in *Input, cp *callPlan, params any, have bool) (Decision, error) {
	if p == nil {
		return Decision{}, ErrNotReady
	}
	if cp == nil {
		cp = p.plan(ctx, in.Service, in.Function)
	}
	if !have && cp.params != nil {
		if raw, ok := in.Params.(json.RawMessage); ok && len(raw) > 0 {
			if !a.acquire() {
				return Decision{}, errBusy
			}
			defer a.release()
		}
		var err error
		if params, err = goParams(in.Params, cp.params); err != nil {
			return Decision{}, err
		}
	}
	var d Decision
	for i, st := range p.stages {
		var err error
		if d, err = st.decide(ctx, cp.stages[i], in, params); err != nil {
			return Decision{}, err
		}
		if !d.Allow {
			return d, nil
		}
	}
	return d, nil
}

// slowDecide decides in by evaluating each stage's whole decision, with
// the whole input document: what every fast answer must equal.
func (p *policy) slowDecide(ctx context.Context, in *Input) (Decision, error) {
	params, err := goParams(in.Params, &readTree{whole: true})
	if err != nil {
		return Decision{}, err
	}
	input, err := in.value(inputUses{all: true, eager: true}, params)
	if err != nil {
		return Decision{}, err
	}
	var d Decision
	for i, st := range p.stages {
		v, err := evalContext(ctx, st.full, input)
		if d, err = st.decision(p.generic.stages[i], v, err); err != nil {
			return Decision{}, err
		}
		if !d.Allow {
			return d, nil
		}
	}
	return d, nil
}
