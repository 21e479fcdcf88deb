package authz_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

const examplePolicy = `package funcmesh.authz

default allow := false

# Admins may call anything.
allow if input.auth.role == "admin"

# Anyone signed in may charge up to 100.
allow if {
	input.service == "payments"
	input.function == "charge"
	input.auth != null
	input.params.amount <= 100
}

status := 401 if input.auth == null

reason := "only admins may do this" if not allow
`

func Example() {
	ctx := context.Background()
	policy, err := authz.New(ctx, authz.Module("authz.rego", examplePolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, in := range []authz.Input{
		{Service: "payments", Function: "charge", Auth: map[string]any{"sub": "u1"}, Params: map[string]any{"amount": 5}},
		{Service: "payments", Function: "charge", Auth: map[string]any{"sub": "u1"}, Params: map[string]any{"amount": 500}},
		{Service: "payments", Function: "charge", Params: map[string]any{"amount": 5}},
		{Service: "payments", Function: "refund", Auth: map[string]any{"sub": "u2", "role": "admin"}},
	} {
		d, err := policy.Authorize(ctx, in)
		fmt.Println(in.Function, d.Allow, d.Status, d.Reason, err)
	}
	// Output:
	// charge true 0  <nil>
	// charge false 403 only admins may do this <nil>
	// charge false 401 only admins may do this <nil>
	// refund true 0  <nil>
}

// The middleware goes after the JWT middleware, which puts the verified
// claims in the request's context; jwt stands for it here.
func ExampleAuthorizer_Middleware() {
	ctx := context.Background()
	policy, err := authz.New(ctx,
		authz.Module("authz.rego", examplePolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	gateway := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the body the policy saw, still readable
		fmt.Fprintf(w, "called %s.%s with %s", r.PathValue("service"), r.PathValue("function"), body)
	})
	chain := alice.New(jwt, policy.Middleware)
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", chain.Then(gateway))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, token := range []string{"u1", ""} {
		req, _ := http.NewRequest("POST", srv.URL+"/fn/payments/charge", strings.NewReader(`{"amount": 5}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	// Output:
	// 200 called payments.charge with {"amount": 5}
	// 401 {"error":{"code":"unauthenticated","message":"only admins may do this"}}
}

// jwt stands for the JWT middleware: it takes the bearer token as the
// subject, without any verification.
func jwt(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			r = r.WithContext(reqctx.WithClaims(r.Context(), map[string]any{"sub": sub}, nil))
		}
		next.ServeHTTP(w, r)
	})
}

// Wiring the policy of a directory (tests kept beside it are skipped)
// after the JWT middleware, reloading it when the files change.
func ExampleFiles() {
	ctx := context.Background()
	policy, err := authz.New(ctx,
		authz.Files("testdata/policy"),
		authz.WithWatch(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer policy.Close()

	mux := http.NewServeMux()
	chain := alice.New(jwt, policy.Middleware)
	mux.Handle("POST /fn/{service}/{function}", chain.Then(gateway))

	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/fn/payments/charge", strings.NewReader(`{"amount": 500}`))
	req.Header.Set("Authorization", "Bearer u1")
	mux.ServeHTTP(rec, req)
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	// Output:
	// 403 {"error":{"code":"permission_denied","message":"only admins may do this"}}
}

// gateway stands for the mesh gateway.
var gateway = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, "called")
})

func ExampleRulesJSON() {
	ctx := context.Background()
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(`{"services": {
		"payments": {"functions": {
			"charge":  {"rule": {"rule": "authenticated"}},
			"default": {"rule": {"rule": "deny"}}}},
		"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`)))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, in := range []authz.Input{
		{Service: "payments", Function: "charge"},
		{Service: "payments", Function: "charge", Auth: map[string]any{"sub": "u1"}},
		{Service: "payments", Function: "refund", Auth: map[string]any{"sub": "u1"}},
		{Service: "orders", Function: "list"},
	} {
		d, _ := policy.Authorize(ctx, in)
		fmt.Printf("%s.%s allow=%v status=%d reason=%q\n", in.Service, in.Function, d.Allow, d.Status, d.Reason)
	}
	// Output:
	// payments.charge allow=false status=401 reason="authentication required"
	// payments.charge allow=true status=0 reason=""
	// payments.refund allow=false status=403 reason="permission denied"
	// orders.list allow=true status=0 reason=""
}

func ExampleParseRules() {
	_, err := authz.ParseRules([]byte(`{"services": {"payments": {"functions": {"charge": {"rule":
		{"rule": "and", "clauses": [
			{"rule": "authenticated"},
			{"rule": "match", "eval": "=~", "f1": "args.auth.role", "f2": "admin"}]}}}}}}`))
	fmt.Println(err)
	// Output:
	// authz: rule config: services.payments.functions.charge.rule.clauses[1].eval: unknown operator "=~"; want one of == != < <= > >= in notIn
}

func ExampleRuleConfig_Rego() {
	cfg, err := authz.ParseRules([]byte(`{"services": {
		"payments": {"functions": {
			"refund": {"rule": {"rule": "or", "clauses": [
				{"rule": "match", "eval": "==", "f1": "args.auth.role", "f2": "admin"},
				{"rule": "match", "eval": "<=", "f1": "args.params.amount", "f2": 10}]}}}}}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	src, _ := cfg.Rego()
	fmt.Print(src)
	// Output:
	// # Code generated by funcmesh/authz from a rule config. DO NOT EDIT.
	// # Change the rule config instead; test this module with opa test.
	// package funcmesh.rules
	//
	// # decision is the answer for the call in input.
	// default decision := {"allow": false, "status": 403, "reason": "permission denied"}
	//
	// decision := {"allow": true} if allow
	//
	// decision := {"allow": false, "status": 401, "reason": messages[entry]} if {
	// 	not allow
	// 	auth_denial
	// }
	//
	// decision := {"allow": false, "status": 401, "reason": "authentication required"} if {
	// 	not allow
	// 	auth_denial
	// 	not messages[entry]
	// }
	//
	// decision := {"allow": false, "status": 403, "reason": messages[entry]} if {
	// 	not allow
	// 	not auth_denial
	// }
	//
	// # auth_denial is true when signing in might help: the caller is
	// # anonymous and the entry's rule refers to claims (status 401).
	// auth_denial if {
	// 	anonymous
	// 	entry in needs_auth
	// }
	//
	// # messages holds the error messages the entries' rules carry.
	// messages := {}
	//
	// # anonymous is true when the caller presented no claims.
	// anonymous if not is_object(input.auth)
	//
	// # entry is the config entry that applies to the call, the first of
	// # services.<s>.functions.<f>, services.<s>.functions.default,
	// # services.default.functions.<f> and services.default.functions.default.
	// entry := e if {
	// 	e := entries[input.service][input.function]
	// } else := e if {
	// 	e := entries[input.service][fallback]
	// } else := e if {
	// 	e := entries[fallback][input.function]
	// } else := e if {
	// 	e := entries[fallback][fallback]
	// }
	//
	// # fallback is the name that stands for any other service or function
	// # (a rule rather than a literal, which the type checker would refuse
	// # when the config does not use it).
	// fallback := "default"
	//
	// entries := {
	// 	"payments": {"refund": "payments.refund"},
	// }
	//
	// # needs_auth holds the entries whose rule refers to the caller's claims:
	// # an anonymous caller they deny gets status 401.
	// needs_auth := {"payments.refund"}
	//
	// # allow is true when the entry's rule allows the call, and undefined
	// # otherwise, which decision reads as a denial.
	// # services.payments.functions.refund
	// allow if {
	// 	entry == "payments.refund"
	// 	rule_0
	// }
	//
	// # services.payments.functions.refund.rule: or
	// rule_0 if rule_0_0
	// rule_0 if rule_0_1
	//
	// # services.payments.functions.refund.rule.clauses[0]: match args.auth.role == "admin" as string
	// rule_0_0 if {
	// 	is_string(input.auth.role)
	// 	input.auth.role == "admin"
	// }
	//
	// # services.payments.functions.refund.rule.clauses[1]: match args.params.amount <= 10 as number
	// rule_0_1 if {
	// 	is_number(input.params.amount)
	// 	input.params.amount <= 10
	// }
}

func ExampleWithDecisionHook() {
	ctx := context.Background()
	policy, err := authz.New(ctx,
		authz.RulesJSON([]byte(`{"services": {"default": {"functions": {"default": {"rule": {"rule": "authenticated"}}}}}}`)),
		authz.WithDecisionHook(func(_ context.Context, d authz.DecisionInfo) {
			fmt.Printf("%s.%s allow=%v status=%d\n", d.Service, d.Function, d.Allow, d.Status)
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	policy.Authorize(ctx, authz.Input{Service: "payments", Function: "charge"})
	policy.Authorize(ctx, authz.Input{Service: "payments", Function: "charge", Auth: map[string]any{"sub": "u1"}})
	// Output:
	// payments.charge allow=false status=401
	// payments.charge allow=true status=0
}

// A service authorizes a call another function makes to it, with the
// caller in the input.
func ExampleAuthorizer_Authorize() {
	ctx := context.Background()
	policy, err := authz.New(ctx, authz.Module("internal.rego", `package funcmesh.authz
allow if input.caller.service == "billing"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := policy.Authorize(ctx, authz.Input{
		Service: "payments", Function: "charge",
		Caller: &transport.Caller{Service: "orders", Function: "checkout"},
	})
	fmt.Println(d.Allow, d.Err(), err)
	// Output:
	// false permission_denied: permission denied <nil>
}
