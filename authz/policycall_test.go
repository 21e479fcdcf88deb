package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// authFunc stands for an authorization function of the mesh: it records
// what it is asked and answers what the test sets.
type authFunc struct {
	calls  atomic.Int64
	answer atomic.Pointer[string]
	err    atomic.Pointer[error]
	delay  atomic.Int64 // nanoseconds

	mu     sync.Mutex
	last   map[string]any
	caller string
	claims string
	dead   bool // the context had a deadline
}

func newAuthFunc(answer string) *authFunc {
	f := &authFunc{}
	f.set(answer)
	return f
}

func (f *authFunc) set(answer string) { f.answer.Store(&answer) }

func (f *authFunc) call(ctx context.Context, service, function string, params []byte) ([]byte, error) {
	f.calls.Add(1)
	var p map[string]any
	json.Unmarshal(params, &p)
	f.mu.Lock()
	f.last = p
	c, _ := reqctx.Caller(ctx)
	f.caller = c.String()
	raw, _ := reqctx.ClaimsJSON(ctx)
	f.claims = string(raw)
	_, f.dead = ctx.Deadline()
	f.mu.Unlock()
	if service != "auth" || function != "check" {
		return nil, errors.New("no such function")
	}
	if d := time.Duration(f.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if e := f.err.Load(); e != nil {
		return nil, *e
	}
	return []byte(*f.answer.Load()), nil
}

// TestFuncRule decides func rules through the Authorizer: the function's
// answer decides each call, every decision asks again (nothing is
// cached), and any failure denies.
func TestFuncRule(t *testing.T) {
	t.Parallel()
	f := newAuthFunc(`{"ack": true}`)
	a := newAuthorizer(t, authz.RulesJSON([]byte(allKindsRules)), authz.WithCall(f.call))
	in := authz.Input{Service: "shop", Function: "func", Auth: map[string]any{"sub": "u1"}, Params: json.RawMessage(`{"amount": 5}`), Token: "t0k3n"}
	ctx := reqctx.WithClaims(context.Background(), in.Auth, nil)
	decide := func() authz.Decision {
		t.Helper()
		d, err := a.Authorize(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for i, tt := range []struct {
		answer string
		allow  bool
	}{
		{`{"ack": true}`, true}, {`{"ack": false}`, false}, {`{"ack": true}`, true}, {`{"ack": "yes"}`, false},
		{`{"ack": 1}`, false}, {`{"ack": true} {}`, false}, {`ack`, false}, {``, false}, {`null`, false},
		{`{"ack": true, "why": "premium"}`, true}, {`[{"ack": true}]`, false},
	} {
		f.set(tt.answer)
		before := f.calls.Load()
		if d := decide(); d.Allow != tt.allow || !tt.allow && d.Status != 403 {
			t.Errorf("%d: answer %s: %+v; want allow %v", i, tt.answer, d, tt.allow)
		}
		if f.calls.Load() == before {
			t.Errorf("%d: the decision did not call the function", i)
		}
	}
	f.mu.Lock()
	want := map[string]any{"service": "shop", "function": "func", "params": map[string]any{"amount": 5.0}, "auth": map[string]any{"sub": "u1"}, "token": "t0k3n"}
	if got, _ := json.Marshal(f.last); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("the function got %s; want %s", got, must(json.Marshal(want)))
	}
	if f.caller != authz.PolicyCaller.String() || f.claims != `{"sub":"u1"}` || !f.dead {
		t.Errorf("the function ran as %q with claims %q, deadline %v; want %s, the caller's claims, a deadline", f.caller, f.claims, f.dead, authz.PolicyCaller)
	}
	f.mu.Unlock()

	// An error answer denies.
	f.set(`{"ack": true}`)
	e := errors.New("boom")
	f.err.Store(&e)
	if d := decide(); d.Allow {
		t.Errorf("an error answer allowed: %+v", d)
	}
	f.err.Store(nil)

	// The time bound: a function slower than it denies; the decision's
	// own deadline bounds it sooner.
	f.delay.Store(int64(time.Minute))
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	start := time.Now()
	d, err := a.Authorize(short, in)
	cancel()
	if d.Allow || time.Since(start) > 10*time.Second {
		t.Errorf("a function that does not answer: %+v, %v after %v", d, err, time.Since(start))
	}
	f.delay.Store(0)

	// Errors carry the config's messages.
	f.set(`{"ack": false}`)
	d, err = a.Authorize(ctx, authz.Input{Service: "shop", Function: "errouter", Auth: map[string]any{"sub": "u"}})
	if err != nil || d.Allow || d.Status != 403 || d.Reason != "not now" {
		t.Errorf("errouter: %+v, %v; want 403 not now", d, err)
	}
}

// TestFuncRuleWithoutCall: without WithCall, a func rule denies.
func TestFuncRuleWithoutCall(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.RulesJSON([]byte(allKindsRules)))
	d, err := a.Authorize(context.Background(), authz.Input{Service: "shop", Function: "func", Auth: map[string]any{"sub": "u1"}})
	if err != nil || d.Allow || d.Status != 403 {
		t.Errorf("%+v, %v; want a 403 denial", d, err)
	}
	if _, err := authz.New(context.Background(), authz.RulesJSON([]byte(allKindsRules)), authz.WithCall(nil)); err == nil {
		t.Error("WithCall(nil) accepted")
	}
}

// TestPolicyCallRecursion: a function the policy asks that asks the
// policy about the call being decided (in process, or as a nested call
// of the same request) is refused rather than looping.
func TestPolicyCallRecursion(t *testing.T) {
	t.Parallel()
	var a *authz.Authorizer
	var calls atomic.Int64
	call := func(ctx context.Context, service, function string, params []byte) ([]byte, error) {
		if calls.Add(1) > 10 {
			return nil, errors.New("looping")
		}
		// The function makes a call that the same policy decides, with
		// the same request ID, as a router would for its nested call.
		var inner context.Context = ctx
		if calls.Load()%2 == 0 {
			id, _ := reqctx.RequestID(ctx)
			inner = reqctx.WithRequestID(context.Background(), id)
		}
		d, err := a.Authorize(inner, authz.Input{Service: "shop", Function: "func"})
		if err != nil || !d.Allow {
			return []byte(`{"ack": false}`), nil
		}
		return []byte(`{"ack": true}`), nil
	}
	a = newAuthorizer(t, authz.RulesJSON([]byte(allKindsRules)), authz.WithCall(call))
	for _, id := range []string{"r1", "r2"} {
		ctx := reqctx.WithRequestID(context.Background(), id)
		d, err := a.Authorize(ctx, authz.Input{Service: "shop", Function: "func"})
		if err != nil || d.Allow {
			t.Errorf("%s: %+v, %v; want a denial", id, d, err)
		}
	}
	if n := calls.Load(); n > 8 {
		t.Errorf("the function was called %d times", n)
	}
}

// TestRegoPolicyCall: hand-written Rego calls functions with
// funcmesh.call; each decision calls again.
func TestRegoPolicyCall(t *testing.T) {
	t.Parallel()
	f := newAuthFunc(`{"ack": true, "plan": "premium"}`)
	a := newAuthorizer(t, authz.Module("policy.rego", `package funcmesh.authz

default allow := false

allow if {
	input.function == "watch"
	funcmesh.call("auth", "check", {"user": input.auth.sub}).plan == "premium"
}
`), authz.WithCall(f.call))
	in := authz.Input{Service: "video", Function: "watch", Auth: map[string]any{"sub": "u1"}}
	for i, plan := range []string{"premium", "free", "premium"} {
		f.set(`{"plan": "` + plan + `"}`)
		before := f.calls.Load()
		d, err := a.Authorize(context.Background(), in)
		if err != nil || d.Allow != (plan == "premium") {
			t.Errorf("%d: plan %s: %+v, %v", i, plan, d, err)
		}
		if f.calls.Load() == before {
			t.Errorf("%d: the decision did not call the function", i)
		}
	}
	f.mu.Lock()
	if got, _ := json.Marshal(f.last); string(got) != `{"user":"u1"}` {
		t.Errorf("the function got %s", got)
	}
	f.mu.Unlock()
}

// TestTokenRule: args.token reads the caller's raw token, which the
// middleware takes from the context.
func TestTokenRule(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.RulesJSON([]byte(allKindsRules)))
	for _, tt := range []struct {
		token string
		want  int
	}{{"t0k3n", 0}, {"other", 403}, {"", 401}} {
		ctx := context.Background()
		in := authz.Input{Service: "shop", Function: "token"}
		if tt.token != "" {
			in.Auth = map[string]any{"sub": "u1"}
			ctx = reqctx.WithTokenClaims(ctx, in.Auth, nil, tt.token)
		}
		in.Token, _ = reqctx.Token(ctx)
		d, err := a.Authorize(ctx, in)
		if err != nil || d.Allow != (tt.want == 0) || tt.want != 0 && d.Status != tt.want {
			t.Errorf("token %q: %+v, %v; want %d", tt.token, d, err, tt.want)
		}
	}
}

// TestRuleKindsAuthorizer decides every new kind through the Authorizer
// with the same answers the opa test tests give the module.
func TestRuleKindsAuthorizer(t *testing.T) {
	t.Parallel()
	f := newAuthFunc(`{"ack": true}`)
	a := newAuthorizer(t, authz.RulesJSON([]byte(allKindsRules)), authz.WithCall(f.call))
	type c struct {
		fn     string
		auth   map[string]any
		params string
		want   int
		reason string
	}
	for _, tt := range []c{
		{"in", map[string]any{"role": "ops"}, `null`, 0, ""},
		{"in", map[string]any{"role": "user"}, `null`, 403, "permission denied"},
		{"in", nil, `null`, 401, "authentication required"},
		{"notin", map[string]any{"role": "user"}, `{"blocked": "spam"}`, 0, ""},
		{"notin", map[string]any{"role": "spam"}, `{"blocked": "spam"}`, 403, ""},
		{"notin", map[string]any{"role": "user"}, `{}`, 403, ""},
		{"inref", map[string]any{"sub": "u1"}, `{"members": ["u0", "u1"]}`, 0, ""},
		{"inref", map[string]any{"sub": "u1"}, `{"members": "u1"}`, 403, ""},
		{"notinref", map[string]any{"sub": "u1"}, `{"banned": ["u2"]}`, 0, ""},
		{"notinref", map[string]any{"sub": "u1"}, `{}`, 403, ""},
		{"innum", nil, `{"n": 2.50}`, 0, ""},
		{"innum", nil, `{"n": "1"}`, 403, ""},
		{"exists", nil, `{"coupon": null}`, 0, ""},
		{"exists", nil, `{}`, 403, ""},
		{"absent", map[string]any{"sub": "u"}, `null`, 0, ""},
		{"absent", map[string]any{"banned": false}, `null`, 403, ""},
		{"before", nil, `{"at": "2029-12-31"}`, 0, ""},
		{"before", nil, `{"at": "2029-02-29"}`, 403, ""},
		{"before", nil, `{"at": "2030-01-01T00:30:00+01:00"}`, 0, ""},
		{"before", nil, `{"at": 1}`, 403, ""},
		{"sameday", nil, `{"at": "2026-11-29T19:00:00-05:00"}`, 0, ""},
		{"expiry", map[string]any{"until": "2027-01-01"}, `{"at": "2028-06-01T12:00:00Z"}`, 403, ""},
		{"closed", map[string]any{"sub": "u"}, `null`, 403, "the shop is closed"},
		{"errand", map[string]any{"role": "user"}, `{"amount": 500}`, 403, "admins only"},
		{"errand", map[string]any{"role": "admin"}, `{"amount": 500}`, 403, "too much"},
		{"errand", map[string]any{"role": "admin"}, `{"amount": 5}`, 0, ""},
		{"errand", nil, `{"amount": 5}`, 401, "admins only"},
		{"error", nil, `{"a": 2, "b": 2}`, 403, "second"},
		{"errnone", nil, `{"b": 1}`, 401, "authentication required"},
		{"errnone", map[string]any{"sub": "u"}, `{"b": 2}`, 403, "b must be 1"},
		{"func", nil, `null`, 0, ""},
	} {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "shop", Function: tt.fn, Auth: tt.auth, Params: json.RawMessage(tt.params)})
		switch {
		case err != nil:
			t.Errorf("%s %v %s: %v", tt.fn, tt.auth, tt.params, err)
		case d.Allow != (tt.want == 0) || tt.want != 0 && d.Status != tt.want || tt.reason != "" && d.Reason != tt.reason:
			t.Errorf("%s %v %s: %+v; want %d %q", tt.fn, tt.auth, tt.params, d, tt.want, tt.reason)
		}
	}
}

// TestServiceRulesKinds: Space Cloud's own documentation's service
// config, and one with the new kinds, load per service.
func TestServiceRulesKinds(t *testing.T) {
	t.Parallel()
	f := newAuthFunc(`{"ack": true}`)
	a := newAuthorizer(t,
		authz.ServiceRulesJSON("greeter", []byte(`{"functions": {"func1": {"rule": {"rule": "allow"}}}}`)),
		authz.ServiceRulesJSON("video", []byte(`{"functions": {"watch": {"rule": {"rule": "func", "service": "auth", "func": "check", "error": "premium only"}}}}`)),
		authz.WithCall(f.call))
	for _, tt := range []struct {
		svc, fn, answer string
		allow           bool
	}{{"greeter", "func1", "", true}, {"greeter", "other", "", false}, {"video", "watch", `{"ack": true}`, true}, {"video", "watch", `{"ack": false}`, false}} {
		f.set(tt.answer)
		d, err := a.Authorize(context.Background(), authz.Input{Service: tt.svc, Function: tt.fn})
		if err != nil || d.Allow != tt.allow || !tt.allow && tt.svc == "video" && d.Reason != "premium only" {
			t.Errorf("%s.%s: %+v, %v", tt.svc, tt.fn, d, err)
		}
	}
	_, err := authz.ParseRules([]byte(`{"functions": {"func1": {"rule": {"rule": "allow"}}}}`))
	if err == nil || !strings.Contains(err.Error(), "ServiceRulesJSON") {
		t.Errorf("a service's config given as a whole config: %v; want a pointer to ServiceRulesJSON", err)
	}
}

// TestPolicyCallMarked: a decision in a context marked as within a policy
// call (as a router marks a nested call that carries the signed mark)
// calls no function, and its func rule denies; the functions the policy
// calls get the mark and the policy as their caller.
func TestPolicyCallMarked(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var marked, asPolicy atomic.Bool
	call := func(ctx context.Context, service, function string, params []byte) ([]byte, error) {
		calls.Add(1)
		c, _ := reqctx.Caller(ctx)
		marked.Store(reqctx.PolicyCall(ctx))
		asPolicy.Store(c == transport.PolicyCaller)
		return []byte(`{"ack": true}`), nil
	}
	a := newAuthorizer(t, authz.RulesJSON([]byte(allKindsRules)), authz.WithCall(call))
	in := authz.Input{Service: "shop", Function: "func"}
	if d, err := a.Authorize(context.Background(), in); err != nil || !d.Allow || calls.Load() == 0 || !marked.Load() || !asPolicy.Load() {
		t.Fatalf("unmarked: %+v, %v after %d calls (marked %v, as the policy %v); want allowed after a marked call as authz.policy", d, err, calls.Load(), marked.Load(), asPolicy.Load())
	}
	before := calls.Load()
	if d, err := a.Authorize(reqctx.WithPolicyCall(context.Background()), in); err != nil || d.Allow || calls.Load() != before {
		t.Errorf("within a policy call: %+v, %v after %d calls; want a denial without a call", d, err, calls.Load()-before)
	}
}
