package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// kindsRules uses the rule kinds that came from Space Cloud: in and notIn
// over literals and references, and error messages.
const kindsRules = `{"services": {"shop": {"functions": {
	"staff":   {"rule": {"rule": "match", "eval": "in", "type": "string", "f1": "args.auth.role", "f2": ["admin", "clerk"], "error": "staff only"}},
	"open":    {"rule": {"rule": "match", "eval": "notIn", "f1": "args.auth.sub", "f2": ["mallory", "trudy"]}},
	"tagged":  {"rule": {"rule": "match", "eval": "in", "f1": "args.params.tag", "f2": "args.auth.tags"}},
	"sized":   {"rule": {"rule": "match", "eval": "in", "type": "number", "f1": "args.params.size", "f2": [1, 2.5, 10]}},
	"members": {"rule": {"rule": "authenticated", "error": "members only"}}}}}}`

// TestRuleKindsHTTP decides each new kind over HTTP, allowing and
// denying; the package's differential check holds every decision to the
// generated module's.
func TestRuleKindsHTTP(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.RulesJSON([]byte(kindsRules)), authz.WithClaims(testClaims))
	srv := serve(t, a)
	tests := []struct {
		path, claims, body string
		status             int
		msg                string
	}{
		{"/fn/shop/staff", `{"sub": "a", "role": "clerk"}`, `{}`, 200, ""},
		{"/fn/shop/staff", `{"sub": "b", "role": "guest"}`, `{}`, 403, "staff only"},
		{"/fn/shop/staff", `{"sub": "c", "role": ["admin"]}`, `{}`, 403, "staff only"},
		{"/fn/shop/staff", ``, `{}`, 401, "staff only"},
		{"/fn/shop/open", `{"sub": "alice"}`, `{}`, 200, ""},
		{"/fn/shop/open", `{"sub": "mallory"}`, `{}`, 403, "permission denied"},
		{"/fn/shop/open", `{"name": "no sub"}`, `{}`, 403, "permission denied"}, // a missing operand never makes notIn true
		{"/fn/shop/tagged", `{"sub": "a", "tags": ["x", "y"]}`, `{"tag": "y"}`, 200, ""},
		{"/fn/shop/tagged", `{"sub": "a", "tags": ["x", "y"]}`, `{"tag": "z"}`, 403, "permission denied"},
		{"/fn/shop/tagged", `{"sub": "a", "tags": {"k": "y"}}`, `{"tag": "y"}`, 403, "permission denied"}, // an object is not an array
		{"/fn/shop/sized", ``, `{"size": 2.5}`, 200, ""},
		{"/fn/shop/sized", ``, `{"size": 2.50}`, 200, ""},
		{"/fn/shop/sized", ``, `{"size": "10"}`, 403, "permission denied"},
		{"/fn/shop/members", ``, `{}`, 401, "members only"},
		{"/fn/shop/members", `{"sub": "a"}`, `{}`, 200, ""},
	}
	for _, tt := range tests {
		got := do(t, srv, call{path: tt.path, body: tt.body, claims: tt.claims})
		if got.status != tt.status || tt.msg != "" && got.errMsg != tt.msg {
			t.Errorf("%s %s %s: %d %q; want %d %q", tt.path, tt.claims, tt.body, got.status, got.errMsg, tt.status, tt.msg)
		}
	}
}

// TestRuleKindsErrors: bad uses of the new kinds fail at load, naming
// the place.
func TestRuleKindsErrors(t *testing.T) {
	t.Parallel()
	wrap := func(rule string) string {
		return `{"services": {"s": {"functions": {"f": {"rule": ` + rule + `}}}}}`
	}
	const at = "services.s.functions.f.rule"
	tests := []struct{ rule, want string }{
		{`{"rule": "match", "eval": "in", "f1": "args.auth.role", "f2": "admin"}`, at + ".f2: in needs an array"},
		{`{"rule": "match", "eval": "==", "f1": "args.auth.role", "f2": ["a"]}`, at + ".f2: an array literal may only be f2 of in or notIn"},
		{`{"rule": "match", "eval": "in", "f1": ["a"], "f2": "args.auth.roles"}`, at + ".f1: an array literal may only be f2 of in or notIn"},
		{`{"rule": "match", "eval": "in", "f1": "args.auth.role", "f2": ["a", 1]}`, at + ".f2[1]: number in an array of strings"},
		{`{"rule": "match", "eval": "in", "f1": "args.auth.role", "f2": ["a", "utils.exists(args.auth.x)"]}`, at + ".f2[1]: utils.exists(…) in a list"},
		{`{"rule": "match", "eval": "in", "type": "number", "f1": "args.auth.n", "f2": ["a"]}`, at + ".f2: string literal"},
		{`{"rule": "and", "clauses": [{"rule": "allow", "error": "` + strings.Repeat("x", 1025) + `"}]}`, at + ".clauses[0].error: longer than 1024 bytes"},
		{`{"rule": "allow", "error": 5}`, at + ".error: want a string"},
	}
	for _, tt := range tests {
		_, err := authz.ParseRules([]byte(wrap(tt.rule)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want %q", tt.rule, err, tt.want)
		}
	}
}

// TestRuleKindsWithOPATester: the generated module of the new kinds is
// their definition, and opa test decides it as the Authorizer does.
func TestRuleKindsWithOPATester(t *testing.T) {
	t.Parallel()
	const tests = `package funcmesh.rules_test

import data.funcmesh.rules

test_staff_in if rules.decision.allow with input as {"service": "shop", "function": "staff", "auth": {"role": "admin"}}

test_staff_error if {
	d := rules.decision with input as {"service": "shop", "function": "staff", "auth": {"role": "guest"}}
	d == {"allow": false, "status": 403, "reason": "staff only"}
}

test_open_not_in if rules.decision.allow with input as {"service": "shop", "function": "open", "auth": {"sub": "alice"}}

test_open_missing_denied if not rules.decision.allow with input as {"service": "shop", "function": "open", "auth": {}}

test_tagged_reference if rules.decision.allow with input as {"service": "shop", "function": "tagged", "auth": {"tags": ["a"]}, "params": {"tag": "a"}}

test_members_anonymous if {
	d := rules.decision with input as {"service": "shop", "function": "members", "auth": null}
	d == {"allow": false, "status": 401, "reason": "members only"}
}
`
	passed, failed := runOPATests(t, kindsRules, tests)
	if len(passed) != 6 || len(failed) != 0 {
		t.Errorf("passed %v, failed %v; want 6 passed", passed, failed)
	}
	cfg, err := authz.ParseRules([]byte(kindsRules))
	if err != nil {
		t.Fatal(err)
	}
	// The Authorizer agrees.
	a := newAuthorizer(t, authz.Rules(cfg))
	d, err := a.Authorize(context.Background(), authz.Input{Service: "shop", Function: "members"})
	if err != nil || d.Status != 401 || d.Reason != "members only" {
		t.Errorf("members, anonymous: %+v, %v", d, err)
	}
}

// TestUtilsExists: utils.exists(<reference>) is true when the reference
// has a value, null included (as Space Cloud's LoadValue found it), as an
// operand compared with a bool.
func TestUtilsExists(t *testing.T) {
	t.Parallel()
	const rules = `{"services": {"shop": {"functions": {
		"coupon": {"rule": {"rule": "match", "eval": "==", "f1": "utils.exists(args.params.coupon.code)", "f2": true}},
		"nosub":  {"rule": {"rule": "match", "eval": "==", "type": "bool", "f1": "utils.exists(args.auth.sub)", "f2": false}}}}}}`
	a := newAuthorizer(t, authz.RulesJSON([]byte(rules)), authz.WithClaims(testClaims))
	srv := serve(t, a)
	tests := []struct {
		path, claims, body string
		status             int
	}{
		{"/fn/shop/coupon", ``, `{"coupon": {"code": "X1"}}`, 200},
		{"/fn/shop/coupon", ``, `{"coupon": {"code": false}}`, 200},
		{"/fn/shop/coupon", ``, `{"coupon": {"code": null}}`, 200},
		{"/fn/shop/coupon", ``, `{"coupon": "X1"}`, 403},
		{"/fn/shop/coupon", ``, `{}`, 403},
		{"/fn/shop/nosub", `{"name": "a"}`, `{}`, 200},
		{"/fn/shop/nosub", `{"sub": "a"}`, `{}`, 403},
		{"/fn/shop/nosub", ``, `{}`, 200},
	}
	for _, tt := range tests {
		if got := do(t, srv, call{path: tt.path, body: tt.body, claims: tt.claims}); got.status != tt.status {
			t.Errorf("%s %s %s: %d %s; want %d", tt.path, tt.claims, tt.body, got.status, got.body, tt.status)
		}
	}
	for _, bad := range []string{`"utils.exists(x)"`, `"utils.exists(args.auth.a"`, `"utils.exists()"`} {
		_, err := authz.ParseRules([]byte(`{"services": {"s": {"functions": {"f": {"rule": {"rule": "match", "eval": "==", "f1": ` + bad + `, "f2": true}}}}}}`))
		if err == nil || !strings.Contains(err.Error(), "services.s.functions.f.rule.f1: bad") {
			t.Errorf("%s: %v; want an error at f1", bad, err)
		}
	}
}
