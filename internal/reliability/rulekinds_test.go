package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/mesh"
)

// spaceRules is a rule config in Space Cloud's per-service form with each
// kind Space Cloud had; WEBHOOK stands for the test webhook's URL.
var spaceRules = map[string]string{
	"shop": `{"functions": {
		"buy":     {"rule": {"rule": "func", "service": "auth", "func": "check", "error": "not authorized to buy"}},
		"lost":    {"rule": {"rule": "func", "service": "nobody", "func": "check"}},
		"hook":    {"rule": {"rule": "webhook", "url": "WEBHOOK"}},
		"staff":   {"rule": {"rule": "match", "eval": "in", "type": "string", "f1": "args.auth.role", "f2": ["admin", "clerk"]}},
		"open":    {"rule": {"rule": "match", "eval": "notIn", "f1": "args.auth.sub", "f2": "args.params.blocked"}},
		"coupon":  {"rule": {"rule": "match", "eval": "==", "type": "bool", "f1": "utils.exists(args.params.coupon)", "f2": true}},
		"sale":    {"rule": {"rule": "match", "eval": "<", "type": "date", "f1": "args.params.at", "f2": "args.auth.until"}},
		"token":   {"rule": {"rule": "match", "eval": "!=", "type": "string", "f1": "args.token", "f2": ""}},
		"limit":   {"rule": {"rule": "and", "clauses": [
			{"rule": "authenticated", "error": "sign in first"},
			{"rule": "match", "eval": "<=", "type": "number", "f1": "args.params.amount", "f2": 100, "error": "at most 100"}]}}}}`,
	// Space Cloud's documentation's example, as written.
	"greeter": `{"functions": {"func1": {"rule": {"rule": "allow"}}}}`,
	"default": `{"functions": {"default": {"rule": {"rule": "deny"}}}}`,
}

// ruleKindsEnv is a host whose policy is spaceRules, loaded from a
// directory of <service>.json files, with func rules calling through a
// mesh.Client; the functions run on a real broker.
type ruleKindsEnv struct {
	g       *gateway
	ran     atomic.Int64 // shop functions run
	checks  atomic.Int64 // auth.check calls
	lastIn  atomic.Pointer[map[string]any]
	hookRun atomic.Int64
	hookAns atomic.Pointer[string]
	// nestedErr is what auth.check's nested call got.
	nestedErr atomic.Pointer[error]
}

func newRuleKindsEnv(t *testing.T) *ruleKindsEnv {
	t.Helper()
	e := &ruleKindsEnv{}
	b := startBroker(t)
	nc := b.Conn()

	// The authorization function: acks a purchase of less than 10 by a
	// signed-in caller; params.mode makes it fail in each way.
	auth, err := mesh.NewService(nc, "auth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Stop(context.Background()) })
	err = auth.HandleFunc("check", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		e.checks.Add(1)
		var in map[string]any
		if err := c.Decode(&in); err != nil {
			return nil, err
		}
		e.lastIn.Store(&in)
		params, _ := in["params"].(map[string]any)
		switch params["mode"] {
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		case "error":
			return nil, errors.New("the check failed")
		case "text":
			return []byte("ack"), nil
		case "yes":
			return []byte(`{"ack": "yes"}`), nil
		case "recurse":
			// Tricked by its params into calling what is being decided:
			// the nested call passes the router and the same policy,
			// whose func rule would ask this function again.
			_, err := c.Client().Invoke(ctx, "shop", "buy", []byte(`{"amount": 5, "mode": "recurse"}`))
			e.nestedErr.Store(&err)
			return []byte(`{"ack": true}`), nil
		}
		claims, signedIn := c.Claims()
		amount, _ := params["amount"].(float64)
		ack := signedIn && claims["sub"] != nil && amount < 10
		return json.Marshal(map[string]bool{"ack": ack})
	})
	if err != nil {
		t.Fatal(err)
	}
	shop, err := mesh.NewService(nc, "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shop.Stop(context.Background()) })
	for _, fn := range []string{"buy", "lost", "hook", "staff", "open", "coupon", "sale", "token", "limit"} {
		if err := shop.HandleFunc(fn, func(context.Context, *mesh.Call) ([]byte, error) {
			e.ran.Add(1)
			return []byte(`{"ok": true}`), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	greeter, err := mesh.NewService(nc, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { greeter.Stop(context.Background()) })
	if err := greeter.HandleFunc("func1", func(context.Context, *mesh.Call) ([]byte, error) { return []byte(`"hello"`), nil }); err != nil {
		t.Fatal(err)
	}

	// The webhook answers what the test sets.
	ack := `{"ack": true}`
	e.hookAns.Store(&ack)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hookRun.Add(1)
		io.Copy(io.Discard, r.Body)
		switch a := *e.hookAns.Load(); a {
		case "redirect":
			http.Redirect(w, r, "/", http.StatusFound)
		case "500":
			w.WriteHeader(500)
			io.WriteString(w, `{"ack": true}`)
		default:
			io.WriteString(w, a)
		}
	}))
	t.Cleanup(hook.Close)

	dir := t.TempDir()
	for svc, cfg := range spaceRules {
		cfg = strings.ReplaceAll(cfg, "WEBHOOK", hook.URL+"/check")
		if err := os.WriteFile(filepath.Join(dir, svc+".json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	client, err := mesh.NewClient(nc, mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatal(err)
	}
	e.g = newGateway(t, nc, gatewayConfig{Policy: []authz.Option{
		authz.RulesDir(dir),
		authz.WithCall(client.Invoke),
	}})
	return e
}

// TestRuleKindsHTTP: Space Cloud's rule kinds over HTTP, through the whole
// chain (JWT, the policy, the gateway, a real broker), allowing and
// denying; a denied call never runs.
func TestRuleKindsHTTP(t *testing.T) {
	t.Parallel()
	e := newRuleKindsEnv(t)
	alice := []string{"Authorization", bearer(token(t, "alice", "role", "clerk", "until", "2030-01-01T00:00:00Z"))}
	mallory := []string{"Authorization", bearer(token(t, "mallory", "role", "guest"))}
	tests := []struct {
		name, fn, body string
		hdr            []string
		status         int
		msg            string
	}{
		{"func acks", "buy", `{"amount": 5}`, alice, 200, ""},
		{"func does not ack", "buy", `{"amount": 50}`, alice, 403, "not authorized to buy"},
		{"func: anonymous", "buy", `{"amount": 5}`, nil, 403, "not authorized to buy"},
		{"func answers ack yes", "buy", `{"amount": 5, "mode": "yes"}`, alice, 403, "not authorized to buy"},
		{"func answers not JSON", "buy", `{"amount": 5, "mode": "text"}`, alice, 403, "not authorized to buy"},
		{"func fails", "buy", `{"amount": 5, "mode": "error"}`, alice, 403, "not authorized to buy"},
		{"func with no instance running", "lost", `{}`, alice, 403, "permission denied"},
		{"in", "staff", `{}`, alice, 200, ""},
		{"not in", "staff", `{}`, mallory, 403, "permission denied"},
		{"in: anonymous", "staff", `{}`, nil, 401, "authentication required"},
		{"notIn reference", "open", `{"blocked": ["mallory"]}`, alice, 200, ""},
		{"notIn reference: blocked", "open", `{"blocked": ["mallory"]}`, mallory, 403, "permission denied"},
		{"notIn: no list", "open", `{}`, alice, 403, "permission denied"},
		{"exists", "coupon", `{"coupon": null}`, nil, 200, ""},
		{"exists: absent", "coupon", `{"other": 1}`, nil, 403, "permission denied"},
		{"date before", "sale", `{"at": "2029-12-31T18:59:59-05:00"}`, alice, 200, ""},
		{"date after", "sale", `{"at": "2030-01-01"}`, alice, 403, "permission denied"},
		{"not a date", "sale", `{"at": "soon"}`, alice, 403, "permission denied"},
		{"token", "token", `{}`, alice, 200, ""},
		{"token: anonymous", "token", `{}`, nil, 401, "authentication required"},
		{"error: first failing clause", "limit", `{"amount": 5}`, nil, 401, "sign in first"},
		{"error: second clause", "limit", `{"amount": 500}`, alice, 403, "at most 100"},
		{"error: allowed", "limit", `{"amount": 100}`, alice, 200, ""},
		{"the documentation's service config", "func1", `{}`, nil, 200, ""},
	}
	for _, tt := range tests {
		svc := "shop"
		if tt.fn == "func1" {
			svc = "greeter"
		}
		before := e.ran.Load()
		a := e.g.post(svc, tt.fn, tt.body, tt.hdr...)
		if a.status != tt.status || tt.msg != "" && !strings.Contains(string(a.body), `"message":"`+tt.msg+`"`) {
			t.Errorf("%s: %v; want %d %q", tt.name, a, tt.status, tt.msg)
		}
		if ran := e.ran.Load() - before; tt.status != 200 && ran != 0 {
			t.Errorf("%s: denied, yet the function ran", tt.name)
		}
	}
	// The function was asked with the call, and the claims.
	in := *e.lastIn.Load()
	if in["service"] != "shop" || in["function"] != "buy" || in["token"] == nil {
		t.Errorf("auth.check was sent %v", in)
	}

	// Every decision asks again: nothing is cached.
	before := e.checks.Load()
	for range 3 {
		if a := e.g.post("shop", "buy", `{"amount": 5}`, alice...); a.status != 200 {
			t.Errorf("buy: %v", a)
		}
	}
	if n := e.checks.Load() - before; n != 3 {
		t.Errorf("3 decisions called the function %d times; want 3", n)
	}
}

// TestRuleKindsHTTPWebhook: a webhook rule over HTTP: allowed on a 2xx
// {"ack": true}, denied on anything else, and asked at every decision.
func TestRuleKindsHTTPWebhook(t *testing.T) {
	t.Parallel()
	e := newRuleKindsEnv(t)
	alice := []string{"Authorization", bearer(token(t, "alice"))}
	for _, tt := range []struct {
		answer string
		status int
	}{
		{`{"ack": true}`, 200}, {`{"ack": false}`, 403}, {`{"ack": "yes"}`, 403}, {`ack`, 403},
		{"redirect", 403}, {"500", 403}, {`{"ack": true}`, 200},
	} {
		e.hookAns.Store(&tt.answer)
		before := e.hookRun.Load()
		if a := e.g.post("shop", "hook", `{}`, alice...); a.status != tt.status {
			t.Errorf("webhook answering %s: %v; want %d", tt.answer, a, tt.status)
		}
		if e.hookRun.Load() == before {
			t.Errorf("webhook answering %s: not asked", tt.answer)
		}
	}
}

// TestRuleKindsHTTPFuncTimeout: an authorization function that does not
// answer denies once the policy's bound passes, well before the call's
// own deadline.
func TestRuleKindsHTTPFuncTimeout(t *testing.T) {
	t.Parallel()
	e := newRuleKindsEnv(t)
	alice := []string{"Authorization", bearer(token(t, "alice"))}
	a := e.g.post("shop", "buy", `{"amount": 5, "mode": "slow"}`, alice...)
	if a.status != 403 || a.dur < authz.PolicyCallTimeout-time.Second || a.dur > callTimeout {
		t.Errorf("%v; want 403 after about %v", a, authz.PolicyCallTimeout)
	}
	if e.ran.Load() != 0 {
		t.Error("the function ran")
	}
}

// TestRuleKindsHTTPFuncRecursion: an authorization function tricked into
// calling the function being decided (its nested call passes the same
// policy, whose func rule asks it again) is refused at once rather than
// looping until the deadline: the function runs once per decision.
func TestRuleKindsHTTPFuncRecursion(t *testing.T) {
	t.Parallel()
	e := newRuleKindsEnv(t)
	alice := []string{"Authorization", bearer(token(t, "alice"))}
	a := e.g.post("shop", "buy", `{"amount": 5, "mode": "recurse"}`, alice...)
	if a.status != 200 || a.dur > fast(callTimeout) {
		t.Errorf("%v; want 200 at once (auth.check acks)", a)
	}
	if n := e.checks.Load(); n != 1 {
		t.Errorf("auth.check ran %d times; want once", n)
	}
	if p := e.nestedErr.Load(); p == nil || *p == nil || !strings.Contains((*p).Error(), "not authorized to buy") {
		t.Errorf("the nested call got %v; want the policy's denial", p)
	}
	if n := e.ran.Load(); n != 1 {
		t.Errorf("shop.buy ran %d times; want once (the call from HTTP)", n)
	}
}
