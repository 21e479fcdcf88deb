package authz_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/funcmesh/funcmesh/authz"
)

// benchPolicy is a typical hand-written policy: admins may call anything,
// a signed-in user may charge, and everything else is denied with a reason.
const benchPolicy = `package funcmesh.authz

default allow := false

allow if input.auth.role == "admin"

allow if {
	input.service == "payments"
	input.function == "charge"
	input.auth.sub != ""
}

status := 401 if input.auth == null

reason := "only admins may call this" if not allow
`

// benchRules is the rule config of the design document.
const benchRules = `{"services": {
	"payments": {"functions": {
		"charge":  {"rule": {"rule": "authenticated"}},
		"default": {"rule": {"rule": "deny"}}}},
	"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`

func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	claims := map[string]any{"sub": "u1", "role": "user"}
	in := authz.Input{Service: "payments", Function: "charge", Auth: claims}

	b.Run("rego", func(b *testing.B) {
		a, err := authz.New(ctx, authz.Module("policy.rego", benchPolicy))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			d, err := a.Authorize(ctx, in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("rules", func(b *testing.B) {
		a, err := authz.New(ctx, authz.RulesJSON([]byte(benchRules)))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			d, err := a.Authorize(ctx, in)
			if err != nil || !d.Allow {
				b.Fatal(d, err)
			}
		}
	})
	b.Run("naive", func(b *testing.B) {
		pq, err := rego.New(rego.Query("data.funcmesh.authz"), rego.Module("policy.rego", benchPolicy)).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			input := map[string]any{
				"service": in.Service, "function": in.Function, "params": nil,
				"auth": claims, "caller": nil,
				"http": map[string]any{"method": "POST", "path": "/fn/payments/charge", "headers": map[string]any{}},
			}
			rs, err := pq.Eval(ctx, rego.EvalInput(input))
			if err != nil || len(rs) != 1 || rs[0].Expressions[0].Value.(map[string]any)["allow"] != true {
				b.Fatal(rs, err)
			}
		}
	})
}

// BenchmarkMiddleware is a whole request through the middleware, with the
// body decoded into params, without the network.
func BenchmarkMiddleware(b *testing.B) {
	ctx := context.Background()
	const rules = `{"services": {"payments": {"functions": {"charge": {"rule": {"rule": "and", "clauses": [
		{"rule": "authenticated"},
		{"rule": "match", "eval": "<=", "type": "number", "f1": "args.params.amount", "f2": 100}]}}}}}}`
	claims := map[string]any{"sub": "u1", "role": "user"}
	a, err := authz.New(ctx, authz.RulesJSON([]byte(rules)),
		authz.WithClaims(func(context.Context) (map[string]any, bool) { return claims, true }))
	if err != nil {
		b.Fatal(err)
	}
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	body := []byte(`{"amount": 5, "currency": "EUR", "memo": "coffee"}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/fn/payments/charge", bytes.NewReader(body))
		req.SetPathValue("service", "payments")
		req.SetPathValue("function", "charge")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}
