package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// TestClockNeverCached: a policy that reads the clock decides anew on
// every call, however often the same input comes: its residual calls
// time.now_ns, which no plan may fold into a constant or cache.
func TestClockNeverCached(t *testing.T) {
	var now atomic.Int64
	authz.SetClock(func() time.Time { return time.Unix(0, now.Load()) })
	t.Cleanup(func() { authz.SetClock(nil) })
	const deadline = 1_700_000_000_000_000_000
	policies := map[string]string{
		"constant input": fmt.Sprintf("package funcmesh.authz\nallow if time.now_ns() < %d\n", deadline),
		"with claims": fmt.Sprintf(`package funcmesh.authz
allow if {
	input.auth.role == "admin"
	time.now_ns() < %d
}
reason := sprintf("closed at %%d", [time.now_ns()]) if not allow
`, deadline),
		"rules and clock": fmt.Sprintf("package funcmesh.authz\nallow if time.now_ns() < %d\n", deadline),
	}
	for name, src := range policies {
		opts := []authz.Option{authz.Module("p.rego", src)}
		if name == "rules and clock" {
			opts = append(opts, authz.RulesJSON([]byte(`{"services": {"default": {"functions": {"default": {"rule": {"rule": "authenticated"}}}}}}`)))
		}
		a := newAuthorizer(t, opts...)
		in := authz.Input{Service: "s", Function: "f", Auth: map[string]any{"role": "admin"}}
		for i := range 6 {
			open := i%2 == 0
			if open {
				now.Store(deadline - 1)
			} else {
				now.Store(deadline + int64(i))
			}
			for range 3 {
				d, err := a.Authorize(context.Background(), in)
				if err != nil || d.Allow != open {
					t.Fatalf("%s: round %d: got %+v, %v; want allow %v", name, i, d, err, open)
				}
				if name == "with claims" && !open && d.Reason != fmt.Sprintf("closed at %d", deadline+int64(i)) {
					t.Fatalf("%s: round %d: reason %q, from another time", name, i, d.Reason)
				}
			}
		}
	}
}

// TestDifferentialUnderReload decides calls from several goroutines while
// the policy is reloaded from disk between versions, with the package's
// differential check on (see TestMain): every decision the fast path
// makes, from plans and caches of whichever version it saw, must be the
// one plain evaluation of that version makes. Run it with -race.
func TestDifferentialUnderReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	versions := []struct{ rego, data, rules string }{
		{`package funcmesh.authz
default allow := false
allow if input.auth.role == "admin"
allow if {
	input.service == "payments"
	input.params.amount <= data.limits.max
	not data.blocked[input.auth.sub]
}
status := 401 if input.auth == null
reason := "over the limit" if not allow
headers["X-Limit"] := sprintf("%v", [data.limits.max])
`, `{"limits": {"max": 100}, "blocked": {"mallory": true}}`,
			`{"services": {"payments": {"functions": {"default": {"rule": {"rule": "authenticated"}}}}, "default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`},
		{`package funcmesh.authz
allow if input.caller.service == "orders"
allow if {
	some r in input.auth.roles
	r == "ops"
}
allow if input.params.user == input.auth.sub
reason := concat(" ", ["denied", input.function]) if not allow
`, `{"limits": {"max": 5}, "blocked": {}}`,
			`{"services": {"default": {"functions": {
				"charge": {"rule": {"rule": "match", "eval": "<", "type": "number", "f1": "args.params.amount", "f2": 50}},
				"default": {"rule": {"rule": "or", "clauses": [{"rule": "authenticated"}, {"rule": "match", "eval": "==", "f1": "args.params.public", "f2": true}]}}}}}}`},
	}
	write := func(i int) {
		v := versions[i%len(versions)]
		writeFile(t, filepath.Join(dir, "policy", "p.rego"), v.rego)
		writeFile(t, filepath.Join(dir, "policy", "data.json"), v.data)
		writeFile(t, filepath.Join(dir, "rules.json"), v.rules)
	}
	write(0)
	a := newAuthorizer(t, authz.Files(filepath.Join(dir, "policy")), authz.RulesFile(filepath.Join(dir, "rules.json")))

	claims := []map[string]any{
		nil,
		{"sub": "alice", "role": "admin"},
		{"sub": "bob", "role": "user", "roles": []any{"ops"}},
		{"sub": "mallory", "role": "user"},
		{"sub": "carol", "roles": []any{"dev", 3}},
	}
	params := []any{
		nil, json_(`{"amount": 5}`), json_(`{"amount": 500, "user": "bob"}`), json_(`{"user": "carol", "public": true}`),
		json_(`{"amount": "5", "public": "true"}`), json_(`[1, 2]`), map[string]any{"amount": 7, "user": "alice"},
	}
	names := [][2]string{{"payments", "charge"}, {"payments", "refund"}, {"orders", "list"}, {"x", "charge"}}

	var stop atomic.Bool
	var calls atomic.Int64
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				n := names[i%len(names)]
				in := authz.Input{Service: n[0], Function: n[1], Auth: claims[i%len(claims)], Params: params[i/3%len(params)]}
				if i%5 == 0 {
					in.Caller = &transport.Caller{Service: "orders", Function: "list"}
				}
				_, _ = a.Authorize(context.Background(), in)
				calls.Add(1)
			}
		})
	}
	for i := 1; i <= 16; i++ {
		write(i)
		if err := a.Reload(context.Background()); err != nil {
			t.Errorf("Reload: %v", err)
		}
		// Let calls run against each version (polling, with a deadline).
		deadline := time.Now().Add(10 * time.Second)
		for start := calls.Load(); calls.Load() < start+50 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // poll interval within the deadline above
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d calls over 17 versions", calls.Load())
}

// TestSelfComparison: OPA's partial evaluation unifies a comparison of a
// reference with itself away as true, though it is false when the
// reference is undefined (FuzzRuleTrees found it through the
// differential check). Policies that compare a term with itself are not
// specialized, so an undefined role still denies.
func TestSelfComparison(t *testing.T) {
	t.Parallel()
	for _, opts := range [][]authz.Option{
		{authz.Module("p.rego", "package funcmesh.authz\nallow if input.auth.role == input.auth.role\n")},
		{authz.RulesJSON([]byte(`{"services": {"default": {"functions": {"default": {"rule": {"rule": "match", "eval": "==", "f1": "args.auth.role", "f2": "args.auth.role"}}}}}}`))},
	} {
		a := newAuthorizer(t, opts...)
		for _, auth := range []map[string]any{nil, {}, {"role": "x"}} {
			d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: auth})
			if want := auth["role"] != nil; err != nil || d.Allow != want {
				t.Errorf("auth %v: %+v, %v; want allow %v", auth, d, err, want)
			}
		}
	}
}

// TestCallerFromContext: the middleware and Authorize put the calling
// function the context carries (reqctx.WithCaller) into input.caller.
func TestCallerFromContext(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.Module("p.rego", "package funcmesh.authz\nallow if input.caller.service == \"orders\"\n"))
	ctx := reqctx.WithCaller(context.Background(), transport.Caller{Service: "orders", Function: "place"})
	if d, err := a.Authorize(ctx, authz.Input{Service: "s", Function: "f"}); err != nil || !d.Allow {
		t.Errorf("Authorize with a caller in ctx: %+v, %v; want allowed", d, err)
	}
	if d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f"}); err != nil || d.Allow {
		t.Errorf("Authorize without a caller: %+v, %v; want denied", d, err)
	}
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, withCaller := range []bool{true, false} {
		req := httptest.NewRequest("POST", "/fn/s/f", strings.NewReader("{}"))
		req.SetPathValue("service", "s")
		req.SetPathValue("function", "f")
		if withCaller {
			req = req.WithContext(ctx)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if want := map[bool]int{true: 200, false: 403}[withCaller]; rec.Code != want {
			t.Errorf("middleware, caller %v: %d; want %d", withCaller, rec.Code, want)
		}
	}
}

// TestTypeKeys: a path whose type alone the policy tests (is_object,
// type_name, …) keys the cache by its type, so callers whose values there
// differ share decisions, and callers whose types differ do not. Every
// decision is also checked against plain evaluation (TestMain).
func TestTypeKeys(t *testing.T) {
	t.Parallel()
	rules := newAuthorizer(t, authz.RulesJSON([]byte(`{"services": {
		"payments": {"functions": {
			"charge": {"rule": {"rule": "authenticated"}},
			"refund": {"rule": {"rule": "and", "clauses": [{"rule": "authenticated"},
				{"rule": "match", "eval": "==", "type": "string", "f1": "args.auth.role", "f2": "admin"}]}}}}}}`)))
	for fn, want := range map[string][]string{"charge": {"type(auth)"}, "refund": {"auth.role", "type(auth)"}} {
		if got := authz.CacheKeys(rules, "payments", fn); len(got) != 1 || !slices.Equal(got[0], want) {
			t.Errorf("rule config, payments.%s: cache keys %q; want %q", fn, got, want)
		}
	}
	for _, c := range []struct {
		auth  map[string]any
		fn    string
		allow bool
	}{
		{nil, "charge", false}, {map[string]any{"sub": "a"}, "charge", true}, {map[string]any{"sub": "b", "role": "admin"}, "charge", true},
		{nil, "charge", false}, {map[string]any{}, "charge", true},
		{map[string]any{"role": "admin"}, "refund", true}, {map[string]any{"role": "user"}, "refund", false},
		{map[string]any{"role": []any{"admin"}}, "refund", false}, {nil, "refund", false}, {map[string]any{"role": "admin", "x": 1.0}, "refund", true},
	} {
		d, err := rules.Authorize(context.Background(), authz.Input{Service: "payments", Function: c.fn, Auth: c.auth})
		if err != nil || d.Allow != c.allow {
			t.Errorf("rule config, payments.%s, auth %v: %+v, %v; want allow %v", c.fn, c.auth, d, err, c.allow)
		}
	}

	a := newAuthorizer(t, authz.Module("p.rego", `package funcmesh.authz
allow if {
	is_object(input.params.order)
	input.params.order.total < 100
}
allow if type_name(input.params.tag) == "string"
reason := sprintf("%s, %s", [type_name(input.params.order), type_name(input.params.tag)]) if not allow
status := 401 if is_null(input.auth)
`))
	if got, want := authz.CacheKeys(a, "s", "f"), []string{"params.order.total", "type(auth)", "type(params.order)", "type(params.tag)"}; len(got) != 1 || !slices.Equal(got[0], want) {
		t.Errorf("Rego policy: cache keys %q; want %q", got, want)
	}
	for round := range 2 { // the second round answers from the cache
		for _, c := range []struct {
			params string
			auth   map[string]any
			want   authz.Decision
		}{
			{`{"order": {"total": 5}}`, nil, authz.Decision{Allow: true}},
			{`{"order": {"total": 500}}`, nil, authz.Decision{Status: 401}}, // type_name of nothing is undefined
			{`{"order": {"total": 500}, "tag": "x"}`, nil, authz.Decision{Allow: true}},
			{`{"order": {"total": 500}, "tag": "y"}`, map[string]any{}, authz.Decision{Allow: true}},
			{`{"order": {"total": 500}, "tag": 3}`, map[string]any{}, authz.Decision{Status: 403, Reason: "object, number"}},
			{`{"order": {"total": 500}, "tag": 4}`, map[string]any{"sub": "x"}, authz.Decision{Status: 403, Reason: "object, number"}},
			{`{"order": {"total": 500}, "tag": [4]}`, map[string]any{"sub": "x"}, authz.Decision{Status: 403, Reason: "object, array"}},
			{`{"order": [{"total": 5}], "tag": null}`, nil, authz.Decision{Status: 401, Reason: "array, null"}},
			{`{"order": "o", "tag": true}`, nil, authz.Decision{Status: 401, Reason: "string, boolean"}},
			{`{"order": "p", "tag": false}`, map[string]any{}, authz.Decision{Status: 403, Reason: "string, boolean"}},
		} {
			d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Params: json_(c.params), Auth: c.auth})
			if d.Status == 0 && !d.Allow {
				d.Status = 403
			}
			if err != nil || d.Allow != c.want.Allow || d.Status != c.want.Status || d.Reason != c.want.Reason {
				t.Errorf("round %d, params %s, auth %v: %+v, %v; want %+v", round, c.params, c.auth, d, err, c.want)
			}
		}
	}
}

// TestSlowPlanStillPlan: a call waits for its function's plan however
// long partial evaluation takes (within its budget), so whether its body
// is read does not depend on how busy the machine is. Here the plan of
// s.open takes a while to make (heavy does input-independent work, which
// partial evaluation does once) and reads no params, while the policy as
// a whole reads them: the body that is not JSON reaches the handler. When
// a call waited at most 100 ms and was then decided by the whole policy,
// it got 400.
func TestSlowPlanStillPlan(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz

default allow := false

heavy := count({x | some i in numbers.range(1, 40000); x := i % 7})

allow if {
	input.function == "open"
	heavy == 7
}

allow if {
	input.function == "pay"
	input.params.amount < 10
}
`
	a := newAuthorizer(t, authz.Module("slow.rego", policy))
	srv := serve(t, a)
	start := time.Now()
	got := do(t, srv, call{path: "/fn/s/open", body: "not JSON at all"})
	t.Logf("first call answered in %v", time.Since(start))
	if got.status != 200 || got.body != "not JSON at all" {
		t.Fatalf("got %d %s (%q); want 200 with the body untouched", got.status, got.errCode, got.body)
	}
	if got := do(t, srv, call{path: "/fn/s/pay", body: "not JSON at all"}); got.status != 400 {
		t.Fatalf("s.pay, whose rule reads params: got %d; want 400", got.status)
	}
}

// TestPlansFull: callers naming ever new functions fill the table of
// plans. Until it may be emptied, a function it lacks is decided by the
// whole policy (which here reads the params, so a body that is not JSON
// gets 400); once it may, the table is emptied and the function gets its
// plan (which reads no params: 200). Before, a full table stayed full
// until the next reload.
func TestPlansFull(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz

default allow := false

allow if input.function == "open"

allow if {
	input.function == "pay"
	input.params.amount < 10
}
`
	for _, tt := range []struct {
		name   string
		renew  time.Duration
		status int
	}{
		{"full, not to be emptied yet", time.Hour, 400},
		{"full, emptied", 0, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAuthorizer(t, authz.Module("plans.rego", policy))
			authz.SetPlanLimits(a, 4, tt.renew)
			srv := serve(t, a)
			for i := range 4 { // invented names fill the table
				if got := do(t, srv, call{path: fmt.Sprintf("/fn/s/made%d", i), body: "{}"}); got.status != 403 {
					t.Fatalf("s.made%d: got %d; want 403", i, got.status)
				}
			}
			got := do(t, srv, call{path: "/fn/s/open", body: "not JSON at all"})
			if got.status != tt.status {
				t.Fatalf("s.open: got %d %s (%q); want %d", got.status, got.errCode, got.body, tt.status)
			}
		})
	}
}
