package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/transport"
)

// newAuthorizer is authz.New that fails the test on error.
func newAuthorizer(t testing.TB, opts ...authz.Option) *authz.Authorizer {
	t.Helper()
	a, err := authz.New(context.Background(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestRegoDecisions(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz

default allow := false

allow if input.auth.role == "admin"

allow if {
	input.service == "public"
	input.http == null
}

status := 401 if input.auth == null

status := 418 if input.function == "teapot"

status := 302 if input.function == "redirect"

reason := "admins only" if input.auth != null
`
	a := newAuthorizer(t, authz.Module("policy.rego", policy))
	admin := map[string]any{"role": "admin"}
	user := map[string]any{"role": "user"}
	tests := []struct {
		name   string
		in     authz.Input
		allow  bool
		status int
		reason string
	}{
		{"admin", authz.Input{Service: "payments", Function: "charge", Auth: admin}, true, 0, ""},
		{"user denied with reason", authz.Input{Service: "payments", Function: "charge", Auth: user}, false, 403, "admins only"},
		{"anonymous gets 401", authz.Input{Service: "payments", Function: "charge"}, false, 401, ""},
		{"policy's own 4xx", authz.Input{Service: "payments", Function: "teapot", Auth: user}, false, 418, "admins only"},
		{"a 3xx becomes 403", authz.Input{Service: "payments", Function: "redirect", Auth: user}, false, 403, "admins only"},
		{"public outside HTTP", authz.Input{Service: "public", Function: "x"}, true, 0, ""},
		{"public over HTTP", authz.Input{Service: "public", Function: "x", HTTP: &authz.HTTPInput{Method: "POST"}}, false, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := a.Authorize(context.Background(), tt.in)
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if d.Allow != tt.allow || d.Status != tt.status || d.Reason != tt.reason {
				t.Errorf("got %+v; want allow %v status %d reason %q", d, tt.allow, tt.status, tt.reason)
			}
			if (d.Err() == nil) != tt.allow {
				t.Errorf("Err() = %v with allow %v", d.Err(), d.Allow)
			}
			if !tt.allow && transport.AsError(d.Err()).HTTPStatus() != tt.status {
				t.Errorf("Err() status %d; want %d", transport.AsError(d.Err()).HTTPStatus(), tt.status)
			}
		})
	}
}

func TestBooleanQuery(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t,
		authz.Module("p.rego", "package app\nallow if input.caller.service == \"billing\"\n"),
		authz.WithQuery("data.app.allow"))
	for caller, want := range map[string]bool{"billing": true, "orders": false} {
		d, err := a.Authorize(context.Background(), authz.Input{
			Service: "payments", Function: "charge",
			Caller: &transport.Caller{Service: caller, Function: "run"},
		})
		if err != nil || d.Allow != want {
			t.Errorf("caller %s: got %+v, %v; want allow %v", caller, d, err, want)
		}
	}
	// No caller: input.caller is null, allow undefined: denied, no error.
	d, err := a.Authorize(context.Background(), authz.Input{Service: "payments", Function: "charge"})
	if err != nil || d.Allow || d.Status != http.StatusForbidden {
		t.Errorf("no caller: got %+v, %v; want a 403 denial", d, err)
	}
}

// TestFailClosed covers every way a decision can fail: each denies, and
// errors answer 500 with a generic message.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	in := authz.Input{Service: "payments", Function: "charge", Auth: map[string]any{"sub": "u1"}}
	tests := []struct {
		name    string
		policy  string
		query   string
		wantErr bool // an evaluation error (500) rather than a denial (403)
	}{
		{"undefined", "package funcmesh.authz\nallow if input.service == \"other\"\n", "", false},
		{"builtin error", "package funcmesh.authz\nallow if to_number(\"not a number\") > 0\n", "", true},
		{"builtin error in negation", "package funcmesh.authz\nallow if not to_number(\"x\") == 1\n", "", true},
		{"division by zero", "package funcmesh.authz\nallow if 1 / (count(input.auth) - 1) > 0\n", "", true},
		{"non-boolean allow", "package funcmesh.authz\nallow := \"yes\"\n", "", true},
		{"non-boolean allow in boolean query", "package x\nallow := 1\n", "data.x.allow", true},
		{"decision of the wrong type", "package x\nd := [true]\n", "data.x.d", true},
		{"status not a number", "package funcmesh.authz\nallow := false\nstatus := \"401\"\n", "", true},
		{"reason not a string", "package funcmesh.authz\nallow := false\nreason := 1\n", "", true},
		{"headers not an object", "package funcmesh.authz\nallow := true\nheaders := [\"X-A\"]\n", "", true},
		{"conflicting values", "package funcmesh.authz\nallow := true if input.auth.sub\nallow := false if input.auth.sub\n", "", true},
		// Issue 16, item 7: the rules of the decision are all evaluated,
		// so an error in one of them is an error even when allow is true.
		{"status errs while allow is true", "package funcmesh.authz\nallow := true\nstatus := to_number(\"x\")\n", "", true},
		{"reason errs while allow is true", "package funcmesh.authz\nallow := true\nreason := sprintf(\"%s\", [to_number(input.auth.sub)])\n", "", true},
		{"status conflicts while allow is true", "package funcmesh.authz\nallow := true\nstatus := 401 if input.auth\nstatus := 403 if input.auth\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := []authz.Option{authz.Module("p.rego", tt.policy)}
			if tt.query != "" {
				opts = append(opts, authz.WithQuery(tt.query))
			}
			var mu sync.Mutex
			var infos []authz.DecisionInfo
			opts = append(opts, authz.WithDecisionHook(func(_ context.Context, i authz.DecisionInfo) {
				mu.Lock()
				infos = append(infos, i)
				mu.Unlock()
			}))
			a, err := authz.New(context.Background(), opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			d, err := a.Authorize(context.Background(), in)
			if d.Allow {
				t.Fatalf("allowed: %+v", d)
			}
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v and no error; want an evaluation error", d)
				}
				e := transport.AsError(err)
				if e.Code() != transport.CodeInternal || d.Status != 500 || e.Message() != transport.DefaultMessage(transport.CodeInternal) {
					t.Errorf("error %v (status %d); want internal with the generic message", e, d.Status)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(infos) != 1 || infos[0].Err == nil || infos[0].Allow || infos[0].Status != 500 {
					t.Errorf("hook saw %+v; want one failed decision", infos)
				}
			} else if err != nil || d.Status != http.StatusForbidden {
				t.Errorf("got %+v, %v; want a 403 denial", d, err)
			}
		})
	}
}

func TestNotReady(t *testing.T) {
	t.Parallel()
	in := authz.Input{Service: "a", Function: "b"}
	for name, a := range map[string]*authz.Authorizer{"nil": nil, "zero": {}} {
		d, err := a.Authorize(context.Background(), in)
		if !errors.Is(err, authz.ErrNotReady) || d.Allow || d.Status != 500 {
			t.Errorf("%s Authorizer: got %+v, %v; want ErrNotReady and a 500 denial", name, d, err)
		}
		if err := a.Reload(context.Background()); !errors.Is(err, authz.ErrNotReady) {
			t.Errorf("%s Authorizer: Reload = %v; want ErrNotReady", name, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		opts []authz.Option
		want string
	}{
		{"no sources", nil, "no policy"},
		{"empty directory", []authz.Option{authz.Files(dir)}, "no policy"},
		{"data only", []authz.Option{authz.Data(map[string]any{"a": 1})}, "no policy"},
		{"syntax error", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow if {")}, "p.rego"},
		{"unsafe variable", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow if x == 1\n")}, "unsafe"},
		{"query names nothing", []authz.Option{authz.Module("p.rego", "package other\nallow := true\n")}, "no rule or data document defines it"},
		{"package without allow", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nstatus := 401\n")}, "no allow rule"},
		{"bad query", []authz.Option{authz.Module("p.rego", "package x\nallow := true\n"), authz.WithQuery("input.allow")}, "reference into data"},
		{"query with a variable", []authz.Option{authz.Module("p.rego", "package x\nallow := true\n"), authz.WithQuery("data.x[y]")}, "constant keys"},
		{"missing file", []authz.Option{authz.Files(filepath.Join(dir, "nope.rego"))}, "nope.rego"},
		{"two rule configs of one service", []authz.Option{authz.RulesJSON([]byte(`{"services": {"a": {}}}`)), authz.ServiceRulesJSON("a", []byte(`{"functions": {}}`))}, `service "a" has rules in another source too`},
		{"bad service config", []authz.Option{authz.ServiceRulesJSON("pay", []byte(`{"functions": {"f": {"rule": {"rule": "allow", "eval": "=="}}}}`))}, `services.pay.functions.f.rule.eval: not used by a "allow" rule`},
		{"service config in the wrapper", []authz.Option{authz.ServiceRulesJSON("pay", []byte(`{"services": {}}`))}, `services.pay.services: unknown field`},
		{"bad rule config", []authz.Option{authz.RulesJSON([]byte(`{"services": {"a": {"functions": {"b": {"rule": {"rule": "maybe"}}}}}}`))}, `services.a.functions.b.rule.rule: unknown rule kind "maybe"`},
		{"nil rule config", []authz.Option{authz.Rules(nil)}, "nil config"},
		{"data conflict", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"), authz.Data(map[string]any{"a": 1}), authz.Data(map[string]any{"a": 2})}, "data.a defined twice"},
		{"data OPA refuses", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"), authz.Data(map[string]any{"n": json.Number("1e999999999")})}, "number too big"},
		{"data under a rule", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"), authz.Data(map[string]any{"funcmesh": map[string]any{"authz": map[string]any{"allow": false}}})}, "conflict"},
		{"credential header", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"), authz.WithHeaders("Authorization")}, "never given to the policy"},
		{"bad header name", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"), authz.WithHeaders("a b")}, "not a header name"},
		{"watch without files", []authz.Option{authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"), authz.WithWatch(true)}, "no Files or RulesFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := authz.New(context.Background(), tt.opts...)
			if err == nil {
				a.Close()
				t.Fatalf("New succeeded; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error %q; want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := authz.New(context.Background()); !errors.Is(err, authz.ErrNoPolicy) {
		t.Errorf("New() = %v; want ErrNoPolicy", err)
	}
}

func TestInvalidNames(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"))
	for _, in := range []authz.Input{{Service: "a.b", Function: "c"}, {Service: "a", Function: ""}, {Service: "a", Function: ">"}} {
		d, err := a.Authorize(context.Background(), in)
		if d.Allow || transport.CodeOf(err) != transport.CodeInvalidArgument {
			t.Errorf("%+v: got %+v, %v; want invalid_argument", in, d, err)
		}
	}
}

func TestContextDone(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.Module("p.rego", "package funcmesh.authz\nallow := true\n"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := a.Authorize(ctx, authz.Input{Service: "a", Function: "b"})
	if d.Allow || transport.CodeOf(err) != transport.CodeCanceled {
		t.Errorf("got %+v, %v; want a canceled denial", d, err)
	}
}

// TestWithKeepsInput checks that "with input… as" in one rule does not
// leak into the input other rules see: the lazy objects the input is
// built from would be changed in place by OPA's copy-and-insert.
func TestWithKeepsInput(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz
admin if input.auth.role == "admin"
probe if admin with input.auth as {"role": "admin"}
probe2 if admin with input.auth.role as "admin"
allow if {
	probe
	probe2
	admin
}
`
	a := newAuthorizer(t, authz.Module("p.rego", policy))
	for role, want := range map[string]bool{"user": false, "admin": true} {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: map[string]any{"role": role}})
		if err != nil || d.Allow != want {
			t.Errorf("role %s: got %+v, %v; want allow %v", role, d, err, want)
		}
	}
}

// TestHTTPSendKeepsInput is TestWithKeepsInput for http.send, which
// copies the request object it is given and inserts into the copy.
func TestHTTPSendKeepsInput(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	const policy = `package funcmesh.authz
allow if {
	http.send(input.auth).status_code == 200
	object.keys(input.auth) == {"method", "url"}
}
`
	a := newAuthorizer(t, authz.Module("p.rego", policy))
	d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: map[string]any{"method": "GET", "url": srv.URL}})
	if err != nil || !d.Allow {
		t.Errorf("got %+v, %v; want allowed", d, err)
	}
}

func TestRecoverEval(t *testing.T) {
	t.Parallel()
	err := authz.RecoverEval(func() { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("got %v; want the panic as an error", err)
	}
	if err := authz.RecoverEval(func() {}); err != nil {
		t.Errorf("got %v without a panic", err)
	}
}

// TestLongEvaluationStops checks that the deadline stops an evaluation
// under way, not only one that has not started.
func TestLongEvaluationStops(t *testing.T) {
	t.Parallel()
	// 27 million combinations, none of which allows: seconds of work.
	const slow = `package funcmesh.authz
allow if {
	r := numbers.range(1, 300)
	some a in r
	some b in r
	some c in r
	a + b + c < 0
}
`
	a := newAuthorizer(t, authz.Module("p.rego", slow))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	d, err := a.Authorize(ctx, authz.Input{Service: "a", Function: "b"})
	if d.Allow || transport.CodeOf(err) != transport.CodeDeadlineExceeded {
		t.Fatalf("got %+v, %v; want a deadline_exceeded denial", d, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("evaluation stopped after %v; want soon after the 50ms deadline", el)
	}
}

func TestSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.rego", `package funcmesh.authz
allow if input.auth.role in data.roles.allowed
`)
	write("roles/data.json", `{"allowed": ["admin", "ops"]}`)
	write("policy_test.rego", "package funcmesh.authz\ntest_x if { false }\nallow := true\n") // skipped, or it would conflict
	write(".hidden/broken.rego", "this is not Rego")                                          // skipped

	fsys := fstest.MapFS{
		"policy/policy.rego":     {Data: []byte("package funcmesh.authz\nallow if input.auth.role in data.roles.allowed\n")},
		"policy/roles/data.yaml": {Data: []byte("allowed: [admin, ops]\n")},
	}
	sources := map[string][]authz.Option{
		"Files":  {authz.Files(dir)},
		"FS":     {authz.FS(fsys, "policy")},
		"FS all": {authz.FS(fstest.MapFS{"p.rego": fsys["policy/policy.rego"], "roles/data.json": {Data: []byte(`{"allowed": ["admin", "ops"]}`)}})},
		"Module and Data": {
			authz.Module("policy.rego", "package funcmesh.authz\nallow if input.auth.role in data.roles.allowed\n"),
			authz.Data(map[string]any{"roles": map[string]any{"allowed": []string{"admin", "ops"}}}),
		},
	}
	for name, opts := range sources {
		t.Run(name, func(t *testing.T) {
			a := newAuthorizer(t, opts...)
			for role, want := range map[string]bool{"ops": true, "admin": true, "user": false} {
				d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: map[string]any{"role": role}})
				if err != nil || d.Allow != want {
					t.Errorf("role %s: got %+v, %v; want allow %v", role, d, err, want)
				}
			}
		})
	}
}

func TestDataMerges(t *testing.T) {
	t.Parallel()
	first := map[string]any{"limits": map[string]any{"charge": 10}}
	second := map[string]any{"limits": map[string]any{"refund": 5}}
	a := newAuthorizer(t,
		authz.Module("p.rego", "package funcmesh.authz\nallow if input.params.amount <= data.limits[input.function]\n"),
		authz.Data(first), authz.Data(second))
	for fn, want := range map[string]bool{"charge": true, "refund": false, "other": false} {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: fn, Params: map[string]any{"amount": 7}})
		if err != nil || d.Allow != want {
			t.Errorf("%s: got %+v, %v; want allow %v", fn, d, err, want)
		}
	}
	if len(first["limits"].(map[string]any)) != 1 {
		t.Errorf("merging changed the caller's map: %v", first)
	}
}

func TestDecisionHeaders(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz
allow := input.auth != null
status := 401 if input.auth == null
headers := {
	"WWW-Authenticate": "Bearer realm=\"funcmesh\"",
	"X-Policy": "v1",
	"Retry-After": "5",
	"Set-Cookie": "session=stolen",
	"Content-Length": "0",
	"Connection": "close",
	"Mesh-Auth": "{}",
	"X-Request-Id": "forged",
	"X-Bad": "a\r\nInjected: yes",
	"bad name": "x",
}
`
	a := newAuthorizer(t, authz.Module("p.rego", policy))
	d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f"})
	if err != nil || d.Allow || d.Status != 401 {
		t.Fatalf("got %+v, %v; want a 401 denial", d, err)
	}
	want := http.Header{
		"Www-Authenticate": {`Bearer realm="funcmesh"`},
		"X-Policy":         {"v1"},
		"Retry-After":      {"5"},
	}
	if len(d.Headers) != len(want) {
		t.Errorf("headers %v; want %v", d.Headers, want)
	}
	for k, v := range want {
		if got := d.Headers.Get(k); got != v[0] {
			t.Errorf("header %s = %q; want %q", k, got, v[0])
		}
	}
	// Allowed decisions carry their headers too.
	d, err = a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: map[string]any{}})
	if err != nil || !d.Allow || d.Headers.Get("X-Policy") != "v1" {
		t.Errorf("got %+v, %v; want an allowance with X-Policy", d, err)
	}
}

func TestDecisionHook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var infos []authz.DecisionInfo
	a := newAuthorizer(t,
		authz.Module("p.rego", "package funcmesh.authz\nallow if input.auth.sub\nreason := \"who are you\" if not allow\n"),
		authz.WithDecisionHook(func(_ context.Context, i authz.DecisionInfo) {
			mu.Lock()
			infos = append(infos, i)
			mu.Unlock()
		}))
	ctx := context.Background()
	a.Authorize(ctx, authz.Input{Service: "s", Function: "f", Auth: map[string]any{"sub": true}})
	a.Authorize(ctx, authz.Input{Service: "s", Function: "g"})
	mu.Lock()
	defer mu.Unlock()
	if len(infos) != 2 {
		t.Fatalf("hook called %d times; want 2", len(infos))
	}
	if i := infos[0]; !i.Allow || i.Service != "s" || i.Function != "f" || i.Status != 0 || i.Err != nil || i.Duration <= 0 {
		t.Errorf("first decision %+v", i)
	}
	if i := infos[1]; i.Allow || i.Function != "g" || i.Status != 403 || i.Reason != "who are you" || i.Err != nil {
		t.Errorf("second decision %+v", i)
	}
}

// TestRulesAndRego checks the combination: the rule config first, then
// the Rego policy for what the rules allow.
func TestRulesAndRego(t *testing.T) {
	t.Parallel()
	const rules = `{"services": {
		"payments": {"functions": {"charge": {"rule": {"rule": "authenticated"}}}},
		"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`
	const policy = `package funcmesh.authz
allow if input.auth.role == "admin"
allow if input.service == "public"
reason := "the policy says no" if not allow
`
	a := newAuthorizer(t, authz.RulesJSON([]byte(rules)), authz.Module("p.rego", policy))
	tests := []struct {
		in     authz.Input
		allow  bool
		status int
		reason string
	}{
		{authz.Input{Service: "payments", Function: "charge"}, false, 401, "authentication required"},                                  // rules deny
		{authz.Input{Service: "payments", Function: "charge", Auth: map[string]any{"role": "user"}}, false, 403, "the policy says no"}, // rules allow, Rego denies
		{authz.Input{Service: "payments", Function: "charge", Auth: map[string]any{"role": "admin"}}, true, 0, ""},                     // both allow
		{authz.Input{Service: "public", Function: "x"}, true, 0, ""},
	}
	for _, tt := range tests {
		d, err := a.Authorize(context.Background(), tt.in)
		if err != nil || d.Allow != tt.allow || d.Status != tt.status || d.Reason != tt.reason {
			t.Errorf("%s.%s %v: got %+v, %v; want allow %v status %d reason %q", tt.in.Service, tt.in.Function, tt.in.Auth, d, err, tt.allow, tt.status, tt.reason)
		}
	}
}

func TestParamsInput(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz
allow if input.params.amount <= 100
allow if input.params.amount == 123456789012345678901234567890
`
	a := newAuthorizer(t, authz.Module("p.rego", policy))
	tests := []struct {
		params any
		allow  bool
	}{
		{map[string]any{"amount": 5}, true},
		{map[string]any{"amount": 500.5}, false},
		{map[string]any{"amount": "5"}, false},
		{nil, false},
		{[]any{1}, false},
		{json_("{\"amount\": 100}"), true},
		{json_("{\"amount\": 123456789012345678901234567890}"), true},
		{json_("{\"amount\": 123456789012345678901234567891}"), false},
		{struct {
			Amount int `json:"amount"`
		}{7}, true},
	}
	for _, tt := range tests {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Params: tt.params})
		if err != nil || d.Allow != tt.allow {
			t.Errorf("params %v: got %+v, %v; want allow %v", tt.params, d, err, tt.allow)
		}
	}
	for _, bad := range []any{json_("{"), json_("[1] 2"), func() {}, map[string]any{"f": make(chan int)}} {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Params: bad})
		if err == nil || d.Allow {
			t.Errorf("params %T %v: got %+v, %v; want an error", bad, bad, d, err)
		}
	}
}

func TestOddClaims(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.Module("p.rego", "package funcmesh.authz\nallow if input.auth.n > 1\nallow if input.auth.s.x == 1\n"))
	tests := []struct {
		claims map[string]any
		allow  bool
	}{
		{map[string]any{"n": 2.5}, true},
		{map[string]any{"n": int64(2)}, true},
		{map[string]any{"n": jsonNumber("3")}, true},
		{map[string]any{"s": struct{ X int }{1}}, false}, // field X marshals as "X"
		{map[string]any{"s": struct {
			X int `json:"x"`
		}{1}}, true},
	}
	for _, tt := range tests {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: tt.claims})
		if err != nil || d.Allow != tt.allow {
			t.Errorf("claims %v: got %+v, %v; want allow %v", tt.claims, d, err, tt.allow)
		}
	}
	// Values OPA cannot take are an error, never a panic or an allowance.
	for _, claims := range []map[string]any{
		{"n": jsonNumber("1e")},
		{"n": jsonNumber("1e999999999")},
		{"s": map[string]any{"x": []any{jsonNumber("1" + strings.Repeat("0", 200))}}},
		{"s": struct{ N json.Number }{jsonNumber("1e999999999")}},
		{"n": make(chan int)},
	} {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: claims})
		if err == nil || d.Allow {
			t.Errorf("claims %v: got %+v, %v; want an error", claims, d, err)
		}
	}
}
