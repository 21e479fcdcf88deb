package authz_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// TestDecisionAllocs: a decision served from a plan's constant or from
// the decision cache stays within the rule config's bound of 5
// allocations per decision, through Authorize and through the middleware
// (for a policy that does not read the body). It takes none today
// (BenchmarkDecision reports the count); the bound is loose so that a Go
// or OPA upgrade does not fail it. (Not parallel: it turns TestMain's
// differential check off while it counts.)
func TestDecisionAllocs(t *testing.T) {
	ctx := context.Background()
	claims := map[string]any{"sub": "u1", "role": "user", "email": "u1@example.com", "exp": 1893456000.0}
	a := newAuthorizer(t, authz.RulesJSON([]byte(benchRules)),
		authz.WithClaims(func(context.Context) (map[string]any, bool) { return claims, true }))
	for _, fn := range []string{"charge", "refund"} { // cached, constant
		in := authz.Input{Service: "payments", Function: fn, Auth: claims}
		if _, err := a.Authorize(ctx, in); err != nil { // makes the plan and the cache entry
			t.Fatal(err)
		}
		if n := allocs(func() { _, _ = a.Authorize(ctx, in) }); n > maxDecisionAllocs {
			t.Errorf("Authorize, payments.%s: %.1f allocations per decision; want at most %d", fn, n, maxDecisionAllocs)
		}
	}

	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("POST", "/fn/payments/charge", strings.NewReader("{}"))
	req.SetPathValue("service", "payments")
	req.SetPathValue("function", "charge")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("middleware: %d %s", w.Code, w.Body)
	}
	if n := allocs(func() { h.ServeHTTP(w, req) }); n > maxDecisionAllocs {
		t.Errorf("middleware: %.1f allocations per request; want at most %d", n, maxDecisionAllocs)
	}
}

// maxDecisionAllocs is the bound on allocations per rule-config decision.
const maxDecisionAllocs = 5

// allocs is testing.AllocsPerRun of f without the differential check,
// the least of three: it counts what the whole process allocates, and a
// goroutine another test left working (a plan being made, say) adds to
// one count, never takes from it.
func allocs(f func()) (n float64) {
	authz.WithoutDifferential(func() {
		n = testing.AllocsPerRun(100, f)
		for range 2 {
			n = min(n, testing.AllocsPerRun(100, f))
		}
	})
	return n
}
