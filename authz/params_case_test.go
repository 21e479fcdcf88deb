package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// TestParamsCaseCollision: params whose objects hold keys that differ only
// in letter case are refused, since a Go function decoding them with
// encoding/json (which matches struct fields regardless of case, the last
// match winning) could see another value than the one the policy checked.
func TestParamsCaseCollision(t *testing.T) {
	t.Parallel()
	for body, refused := range map[string]bool{
		`{"amount":5}`:                          false,
		`{"amount":5,"amount":6}`:               false, // one key: the last value, for both
		`{"amount":5,"total":6}`:                false,
		`{"a":{"x":1},"b":{"x":2}}`:             false,
		`{"amount":5,"AMOUNT":5000}`:            true,
		`{"amount":5,"Amount":5000}`:            true,
		`{"s":1,"\u017f":2}`:                    true, // long s folds to s
		`{"k":1,"\u212a":2}`:                    true, // Kelvin sign folds to k
		`{"x":[{"id":1,"ID":2}]}`:               true,
		`[{"a":{"deep":{"v":1,"V":2}}}]`:        true,
		`{"\u00e9t\u00e9":1,"\u00c9T\u00c9":2}`: true,
		many(20, ""):                            false, // more keys than the pairwise check takes
		many(20, `,"K7":0`):                     true,
		many(20, `,"\u212a7":0`):                true,
	} {
		_, err := authz.DecodeParams([]byte(body), false)
		if (err != nil) != refused {
			t.Errorf("DecodeParams(%s) = %v; want refused: %v", body, err, refused)
		}
	}

	// Through the middleware: 400, and the handler does not run.
	a, err := authz.New(context.Background(), authz.Module("p.rego", `package funcmesh.authz

allow if input.params.amount <= 100
`))
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	h := a.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true }))
	req := httptest.NewRequest("POST", "/fn/payments/charge", strings.NewReader(`{"amount":5,"AMOUNT":5000}`))
	req.SetPathValue("service", "payments")
	req.SetPathValue("function", "charge")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 || ran || !strings.Contains(rec.Body.String(), "letter case") {
		t.Errorf("%d %s, handler ran: %v; want 400 without running it", rec.Code, rec.Body, ran)
	}
}

// many returns an object with n keys k0…k(n-1), and extra before the
// closing brace.
func many(n int, extra string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	return b.String() + extra + "}"
}
