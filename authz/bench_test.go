package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/internal/cputime"
	"github.com/funcmesh/funcmesh/middleware"
)

// benchRules is the rule config of the design document.
const benchRules = `{"services": {
	"payments": {"functions": {
		"charge":  {"rule": {"rule": "authenticated"}},
		"default": {"rule": {"rule": "deny"}}}},
	"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`

// BenchmarkDecision is one decision through Authorize, for the policies
// users run, each over a mix of 64 callers (their claims and params
// vary, as they do in production; the decisions are cached per caller):
//
//	rules            the design document's rule config, no params
//	rules-params     a rule config that also reads args.params.amount
//	quickstart       examples/quickstart/policy.rego (claims and params)
//	rules200         a Rego policy of 200 rules over service, function
//	                 and role
//	naive            the quickstart's policy through rego.EvalInput on a
//	                 prepared query: what a plain integration pays
//
// cpu-ns/op is the CPU time the process spent per decision (garbage
// collection included), which a busy machine does not inflate as it does
// ns/op. Run it with
//
//	go test -run '^$' -bench BenchmarkDecision -count 6 ./authz/ | tee new.txt
func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	const callers = 64
	claims := make([]map[string]any, callers)
	for i := range claims {
		role := "user"
		if i%8 == 0 {
			role = "admin"
		}
		claims[i] = map[string]any{
			"iss": "https://idp.example.com", "sub": fmt.Sprintf("u%d", i), "aud": "funcmesh",
			"role": role, "email": fmt.Sprintf("u%d@example.com", i), "exp": 1893456000.0,
		}
	}
	quickstart, err := os.ReadFile("../examples/quickstart/policy.rego")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, a *authz.Authorizer, ins []authz.Input) {
		b.Helper()
		for _, in := range ins { // every plan made before the timing
			if _, err := a.Authorize(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		cpu := cputime.Process()
		i := 0
		for b.Loop() {
			if _, err := a.Authorize(ctx, ins[i%len(ins)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
	}
	b.Run("rules", func(b *testing.B) {
		a, err := authz.New(ctx, authz.RulesJSON([]byte(benchRules)))
		if err != nil {
			b.Fatal(err)
		}
		var ins []authz.Input
		for i, c := range claims {
			fn := []string{"charge", "refund"}[i%2]
			ins = append(ins, authz.Input{Service: "payments", Function: fn, Auth: c})
		}
		run(b, a, ins)
	})
	b.Run("rules-params", func(b *testing.B) {
		const rules = `{"services": {"payments": {"functions": {"charge": {"rule": {"rule": "and", "clauses": [
			{"rule": "authenticated"},
			{"rule": "match", "eval": "<=", "type": "number", "f1": "args.params.amount", "f2": 100}]}}}}}}`
		a, err := authz.New(ctx, authz.RulesJSON([]byte(rules)))
		if err != nil {
			b.Fatal(err)
		}
		var ins []authz.Input
		for i, c := range claims {
			params := json.RawMessage(fmt.Sprintf(`{"amount": %d, "currency": "EUR", "memo": "coffee"}`, i%8*20))
			ins = append(ins, authz.Input{Service: "payments", Function: "charge", Auth: c, Params: params})
		}
		run(b, a, ins)
	})
	quickstartInputs := func() []authz.Input {
		var ins []authz.Input
		for i, c := range claims {
			switch i % 4 {
			case 0:
				ins = append(ins, authz.Input{Service: "greeter", Function: "hello", Auth: c, Params: json.RawMessage(`{"name": "Ada"}`)})
			default: // their own profile, or another's
				user := c["sub"]
				if i%4 == 3 {
					user = "u0"
				}
				ins = append(ins, authz.Input{Service: "accounts", Function: "profile", Auth: c, Params: json.RawMessage(fmt.Sprintf(`{"user": %q}`, user))})
			}
		}
		return ins
	}
	b.Run("quickstart", func(b *testing.B) {
		a, err := authz.New(ctx, authz.Module("policy.rego", string(quickstart)))
		if err != nil {
			b.Fatal(err)
		}
		run(b, a, quickstartInputs())
	})
	b.Run("rules200", func(b *testing.B) {
		a, err := authz.New(ctx, authz.Module("policy.rego", rules200()))
		if err != nil {
			b.Fatal(err)
		}
		var ins []authz.Input
		for i, c := range claims {
			ins = append(ins, authz.Input{Service: fmt.Sprintf("svc%d", i%20), Function: fmt.Sprintf("fn%d", i%10), Auth: c})
		}
		run(b, a, ins)
	})
	b.Run("naive", func(b *testing.B) {
		pq, err := rego.New(rego.Query("data.funcmesh.authz"), rego.Module("policy.rego", string(quickstart))).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ins := quickstartInputs()
		b.ReportAllocs()
		cpu := cputime.Process()
		i := 0
		for b.Loop() {
			in := ins[i%len(ins)]
			i++
			var params any
			if err := json.Unmarshal(in.Params.(json.RawMessage), &params); err != nil {
				b.Fatal(err)
			}
			input := map[string]any{
				"service": in.Service, "function": in.Function, "params": params,
				"auth": in.Auth, "caller": nil,
				"http": map[string]any{"method": "POST", "path": "/fn/" + in.Service + "/" + in.Function, "headers": map[string]any{}},
			}
			rs, err := pq.Eval(ctx, rego.EvalInput(input))
			if err != nil || len(rs) != 1 {
				b.Fatal(rs, err)
			}
		}
		b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

// rules200 is a Rego policy of 200 rules, each allowing one role to call
// one function of one service.
func rules200() string {
	var s strings.Builder
	s.WriteString("package funcmesh.authz\n\ndefault allow := false\n")
	for i := range 200 {
		fmt.Fprintf(&s, "\nallow if {\n\tinput.service == \"svc%d\"\n\tinput.function == \"fn%d\"\n\tinput.auth.role == %q\n}\n",
			i%20, i/20, []string{"user", "admin"}[i%2])
	}
	s.WriteString("\nreason := \"not allowed\" if not allow\n")
	return s.String()
}

// BenchmarkMiddleware is a whole request through the middleware, without
// the network, for a body of 100 bytes and one of 16 KB:
//
//	rules    the design document's rule config: the body is not read
//	params   a rule config that also reads args.params.amount: the body
//	         is read, checked and the amount decoded
//
// cpu-ns/op is as in BenchmarkDecision.
func BenchmarkMiddleware(b *testing.B) {
	ctx := context.Background()
	const paramsRules = `{"services": {"payments": {"functions": {"charge": {"rule": {"rule": "and", "clauses": [
		{"rule": "authenticated"},
		{"rule": "match", "eval": "<=", "type": "number", "f1": "args.params.amount", "f2": 100}]}}}}}}`
	claims := map[string]any{
		"iss": "https://idp.example.com", "sub": "u1", "aud": "funcmesh",
		"role": "user", "email": "u1@example.com", "exp": 1893456000.0,
	}
	small := []byte(`{"amount": 5, "currency": "EUR", "memo": "coffee", "id": "8Pq3bHdHdFOG1xNHN8fYzo"}`)
	var large bytes.Buffer
	large.WriteString(`{"amount": 5, "items": [`)
	for i := 0; large.Len() < 16<<10-100; i++ {
		if i > 0 {
			large.WriteByte(',')
		}
		fmt.Fprintf(&large, `{"id":%d,"sku":"SKU-%06d","name":"item number %d","qty":%d,"price":"%d.99"}`, i, i*7919%1000000, i, i%9+1, i%500)
	}
	large.WriteString(`]}`)
	for _, policy := range []struct{ name, rules string }{{"rules", benchRules}, {"params", paramsRules}} {
		a, err := authz.New(ctx, authz.RulesJSON([]byte(policy.rules)),
			authz.WithClaims(func(context.Context) (map[string]any, bool) { return claims, true }))
		if err != nil {
			b.Fatal(err)
		}
		h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		for _, body := range []struct {
			name string
			data []byte
		}{{"small", small}, {"16k", large.Bytes()}} {
			serve := func(b *testing.B) {
				req := httptest.NewRequest("POST", "/fn/payments/charge", bytes.NewReader(body.data))
				req.SetPathValue("service", "payments")
				req.SetPathValue("function", "charge")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
			b.Run(policy.name+"/"+body.name, func(b *testing.B) {
				serve(b) // the plan made before the timing
				b.SetBytes(int64(len(body.data)))
				b.ReportAllocs()
				cpu := cputime.Process()
				for b.Loop() {
					serve(b)
				}
				b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// BenchmarkLayers is what the authorization layers of BenchmarkCall's
// mesh path cost per request, without the network and the gateway: the
// chain in front of a handler that does nothing, with the JWT verifier
// (its cache of verified tokens on) and the authorizer of that path's
// rule config added one by one. A 16 KB body costs what a small one
// does: neither layer reads it.
func BenchmarkLayers(b *testing.B) {
	ctx := context.Background()
	secret := []byte("bench-secret-0123456789abcdef-0123456789abcdef")
	tok, err := gojwt.NewWithClaims(gojwt.SigningMethodHS256, gojwt.MapClaims{
		"iss": "https://idp.example.com", "sub": "u1", "aud": "funcmesh", "role": "user",
		"email": "u1@example.com", "iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys:     []middleware.JWTKey{{Algorithm: "HS256", Key: secret}},
		Issuer:   "https://idp.example.com",
		Audience: []string{"funcmesh"},
	})
	if err != nil {
		b.Fatal(err)
	}
	const rules = `{"services": {
		"bench": {"functions": {
			"echo": {"rule": {"rule": "and", "clauses": [
				{"rule": "authenticated"},
				{"rule": "match", "eval": "==", "type": "string", "f1": "args.auth.role", "f2": "user"}]}},
			"default": {"rule": {"rule": "deny"}}}},
		"default": {"functions": {"default": {"rule": {"rule": "deny"}}}}}}`
	a, err := authz.New(ctx, authz.RulesJSON([]byte(rules)))
	if err != nil {
		b.Fatal(err)
	}
	noop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	base := alice.New(middleware.RequestID, middleware.Recover(nil))
	for _, c := range []struct {
		name  string
		chain http.Handler
	}{
		{"bare", base.Then(noop)},
		{"jwt", base.Append(middleware.JWT(verifier)).Then(noop)},
		{"jwt-authz", base.Append(middleware.JWT(verifier), a.Middleware).Then(noop)},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("POST", "/fn/bench/echo", strings.NewReader(`{"amount": 5}`))
			req.SetPathValue("service", "bench")
			req.SetPathValue("function", "echo")
			req.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			c.chain.ServeHTTP(w, req) // the plan and the verified token before the timing
			if w.Code != http.StatusOK {
				b.Fatal(w.Code, w.Body)
			}
			b.ReportAllocs()
			cpu := cputime.Process()
			for b.Loop() {
				c.chain.ServeHTTP(w, req)
			}
			b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
