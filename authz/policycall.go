package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// CallFunc calls a function of the mesh for the policy and returns its
// result: the host gives one to the Authorizer with [WithCall], usually
// the Invoke method of a mesh.Client made with the host's claims signer
// (mesh.WithClaimsSigner). ctx carries the decision's claims and request
// ID ([reqctx.Claims], [reqctx.RequestID]), [PolicyCaller] as the caller
// ([reqctx.Caller]), the mark of a policy call ([reqctx.WithPolicyCall])
// and a deadline of at most [PolicyCallTimeout]. A mesh.Client sends the
// caller as Mesh-Caller and the mark in its signature, so the function
// sees "authz.policy" as its caller and the nested calls it makes carry
// the mark. authz does not import mesh; this is how it calls functions.
type CallFunc func(ctx context.Context, service, function string, params []byte) ([]byte, error)

// PolicyCallBuiltin is the name of the Rego built-in through which
// policies call functions:
//
//	funcmesh.call(service, function, params)
//
// calls service.function with params (any value, sent as JSON) through
// the Authorizer's [CallFunc] and returns the function's result decoded
// from JSON. It is undefined, like a rule that does not match, when the
// call fails in any way: no CallFunc given, a name that is not valid, an
// error answer, the time bound passing, a result that is not JSON, or a
// call the policy makes while deciding a call made for that very call (see
// [WithCall]). So test what it returns (funcmesh.call(…).ack == true),
// never its absence through not. Calls with the same arguments in one
// decision are made once. The built-in is non-deterministic: decisions of
// a policy that uses it are never cached, and partial evaluation leaves
// it for each decision. Mock it in opa test with
//
//	allow with funcmesh.call as mock_call
//
// where mock_call(service, function, params) := … is a Rego function.
// It is registered with OPA when package authz is loaded, so that OPA's
// compiler and tester know it in this process.
const PolicyCallBuiltin = "funcmesh.call"

// PolicyCallTimeout bounds each function call a policy makes, as Space
// Cloud's five seconds did; the decision's deadline, when sooner, bounds
// it too. Webhook rules have the same bound.
const PolicyCallTimeout = 5 * time.Second

// PolicyCaller is the caller the policy's function calls are made as
// (transport.PolicyCaller, "authz.policy"): the host's CallFunc finds it
// in ctx ([reqctx.Caller]), and the function called sees it in its
// Mesh-Caller. A router refuses a nested call that claims it.
var PolicyCaller = transport.PolicyCaller

// WithCall lets the policy call functions, through call: the func rules of
// a rule config and the Rego built-in funcmesh.call ([PolicyCallBuiltin]).
// Without it, every such call fails, and so denies. A call is made with
// the decision's context, bounded by [PolicyCallTimeout], with
// [PolicyCaller] as the caller.
//
// A function the policy calls cannot make the policy call again: the
// policy makes no call while deciding a call made within a policy call
// (the context is marked, [reqctx.PolicyCall]: by this Authorizer for a
// CallFunc that itself decides, or by the router of nested calls, in any
// host process, for a nested call whose signature carries the mark), so
// such a decision's func rules and funcmesh.call deny. And while deciding
// a call to s.f, a policy call to g.h is refused when the same request
// (by its ID) is already waiting for g.h while deciding s.f in this
// process, which holds even when the CallFunc does not mark its calls.
func WithCall(call CallFunc) Option {
	return optionFunc(func(c *config) {
		if call == nil {
			c.errs = append(c.errs, errors.New("authz: WithCall: nil CallFunc"))
			return
		}
		c.call = &policyCalls{call: call, inflight: map[inflightKey]int{}}
	})
}

// policyCalls is an Authorizer's means of calling functions.
type policyCalls struct {
	call CallFunc

	mu       sync.Mutex
	inflight map[inflightKey]int
}

// inflightKey is a policy call waiting for an answer: the request, the
// call being decided and the function called.
type inflightKey struct {
	requestID          string
	service, function  string
	callee, calleeFunc string
}

type (
	decisionKey     struct{}
	decisionContext struct {
		calls             *policyCalls
		logger            *slog.Logger
		service, function string
	}
)

// policyContext returns the context in which in is decided: with what
// funcmesh.call needs when the Authorizer has a CallFunc.
func (a *Authorizer) policyContext(ctx context.Context, in *Input) context.Context {
	if a == nil || a.cfg.call == nil {
		return ctx
	}
	return context.WithValue(ctx, decisionKey{}, &decisionContext{calls: a.cfg.call, logger: a.cfg.logger, service: in.Service, function: in.Function})
}

func init() {
	rego.RegisterBuiltin3(&rego.Function{
		Name:        PolicyCallBuiltin,
		Description: "Calls a function of the mesh and returns its result decoded from JSON; undefined when the call fails.",
		Decl: types.NewFunction(
			types.Args(
				types.Named("service", types.S),
				types.Named("function", types.S),
				types.Named("params", types.A),
			),
			types.Named("result", types.A),
		),
		Memoize:          true,
		Nondeterministic: true,
	}, builtinCall)
}

// builtinCall implements funcmesh.call. A failure is logged and answered
// with undefined (nil, nil); it never fails the evaluation.
func builtinCall(bctx rego.BuiltinContext, service, function, params *ast.Term) (*ast.Term, error) {
	ctx := bctx.Context
	if ctx == nil {
		return nil, nil
	}
	dc, _ := ctx.Value(decisionKey{}).(*decisionContext)
	s, _ := service.Value.(ast.String)
	f, _ := function.Value.(ast.String)
	v, err := dc.do(ctx, string(s), string(f), params.Value)
	if err != nil {
		if dc != nil && dc.logger != nil {
			dc.logger.LogAttrs(ctx, slog.LevelWarn, "authz: a policy call failed; it denies",
				slog.String("service", dc.service), slog.String("function", dc.function),
				slog.String("called", string(s)+"."+string(f)), slog.Any("error", err))
		}
		return nil, nil
	}
	return ast.NewTerm(v), nil
}

var (
	errNoCall    = errors.New("authz: no CallFunc: give the Authorizer WithCall")
	errRecursion = errors.New("authz: a policy call within a policy call for the same call")
)

func (dc *decisionContext) do(ctx context.Context, service, function string, params ast.Value) (ast.Value, error) {
	if dc == nil {
		return nil, errNoCall
	}
	if reqctx.PolicyCall(ctx) {
		return nil, errRecursion
	}
	if err := transport.ValidateName(service); err != nil {
		return nil, err
	}
	if err := transport.ValidateName(function); err != nil {
		return nil, err
	}
	body, err := ast.JSON(params)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	if id, ok := reqctx.RequestID(ctx); ok {
		key := inflightKey{id, dc.service, dc.function, service, function}
		if !dc.calls.enter(key) {
			return nil, errRecursion
		}
		defer dc.calls.leave(key)
	}
	ctx, cancel := context.WithTimeout(ctx, PolicyCallTimeout)
	defer cancel()
	ctx = reqctx.WithPolicyCall(reqctx.WithCaller(ctx, PolicyCaller))
	out, err := dc.calls.call(ctx, service, function, data)
	if err != nil {
		return nil, err
	}
	return decodeResult(out)
}

func (pc *policyCalls) enter(k inflightKey) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.inflight[k] > 0 {
		return false
	}
	pc.inflight[k]++
	return true
}

func (pc *policyCalls) leave(k inflightKey) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.inflight[k]--; pc.inflight[k] <= 0 {
		delete(pc.inflight, k)
	}
}

// decodeResult decodes one JSON value, and nothing after it.
func decodeResult(data []byte) (ast.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("authz: data after the JSON result")
	}
	return ast.InterfaceToValue(x)
}
