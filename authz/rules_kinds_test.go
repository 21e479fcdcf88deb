package authz_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/funcmesh/funcmesh/authz"
)

// allKindsRules has a rule of every kind Space Cloud had that the design's
// first config did not, and error messages on and, or and nested rules.
const allKindsRules = `{"services": {
	"shop": {"functions": {
		"in":      {"rule": {"rule": "match", "eval": "in", "f1": "args.auth.role", "f2": ["admin", "ops"]}},
		"notin":   {"rule": {"rule": "match", "type": "string", "eval": "notIn", "f1": "args.auth.role", "f2": ["banned", "args.params.blocked"]}},
		"inref":   {"rule": {"rule": "match", "eval": "in", "f1": "args.auth.sub", "f2": "args.params.members"}},
		"notinref": {"rule": {"rule": "match", "eval": "notIn", "f1": "args.auth.sub", "f2": "args.params.banned"}},
		"innum":   {"rule": {"rule": "match", "type": "number", "eval": "in", "f1": "args.params.n", "f2": [1, 2.5, -3]}},
		"exists":  {"rule": {"rule": "match", "type": "bool", "eval": "==", "f1": "utils.exists(args.params.coupon)", "f2": true}},
		"absent":  {"rule": {"rule": "match", "eval": "==", "f1": false, "f2": "utils.exists(args.auth.banned)"}},
		"before":  {"rule": {"rule": "match", "type": "date", "eval": "<", "f1": "args.params.at", "f2": "2030-01-01T00:00:00Z"}},
		"sameday": {"rule": {"rule": "match", "type": "date", "eval": "==", "f1": "args.params.at", "f2": "2026-11-30"}},
		"expiry":  {"rule": {"rule": "match", "type": "date", "eval": ">=", "f1": "args.auth.until", "f2": "args.params.at"}},
		"token":   {"rule": {"rule": "match", "eval": "==", "f1": "args.token", "f2": "t0k3n"}},
		"func":    {"rule": {"rule": "func", "service": "auth", "func": "check"}},
		"webhook": {"rule": {"rule": "webhook", "url": "https://hooks.example.com/check"}},
		"closed":  {"rule": {"rule": "deny", "error": "the shop is closed"}},
		"errand":  {"rule": {"rule": "and", "clauses": [
			{"rule": "match", "eval": "==", "f1": "args.auth.role", "f2": "admin", "error": "admins only"},
			{"rule": "match", "eval": "<", "type": "number", "f1": "args.params.amount", "f2": 100, "error": "too much"}]}},
		"errouter": {"rule": {"rule": "and", "error": "not now", "clauses": [
			{"rule": "authenticated"},
			{"rule": "func", "service": "auth", "func": "check", "error": "inner"}]}},
		"error": {"rule": {"rule": "or", "clauses": [
			{"rule": "match", "eval": "==", "f1": "args.params.a", "f2": 1, "error": "first"},
			{"rule": "match", "eval": "==", "f1": "args.params.b", "f2": 1, "error": "second"}]}},
		"errnone": {"rule": {"rule": "and", "clauses": [
			{"rule": "authenticated"},
			{"rule": "match", "eval": "==", "f1": "args.params.b", "f2": 1, "error": "b must be 1"}]}}}},
	"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`

// allKindsTests are opa test tests of the Rego allKindsRules compiles to, with
// funcmesh.call and http.send replaced by mocks through with.
const allKindsTests = `package funcmesh.rules_test

import data.funcmesh.rules

call(f, auth, params) := {"service": "shop", "function": f, "auth": auth, "params": params}

deny(status, reason) := {"allow": false, "status": status, "reason": reason}

test_in if {
	rules.allow with input as call("in", {"role": "ops"}, null)
	not rules.allow with input as call("in", {"role": "user"}, null)
	not rules.allow with input as call("in", {"role": ["admin"]}, null)
	rules.decision == deny(401, "authentication required") with input as call("in", null, null)
}

test_not_in if {
	rules.allow with input as call("notin", {"role": "user"}, {"blocked": "spam"})
	not rules.allow with input as call("notin", {"role": "banned"}, {"blocked": "spam"})
	not rules.allow with input as call("notin", {"role": "spam"}, {"blocked": "spam"})
	# Missing values never make notIn true.
	not rules.allow with input as call("notin", {"role": "user"}, {})
	not rules.allow with input as call("notin", {}, {"blocked": "spam"})
	not rules.allow with input as call("notin", {"role": 7}, {"blocked": "spam"})
}

test_in_reference if {
	rules.allow with input as call("inref", {"sub": "u1"}, {"members": ["u0", "u1"]})
	not rules.allow with input as call("inref", {"sub": "u2"}, {"members": ["u0", "u1"]})
	not rules.allow with input as call("inref", {"sub": "u1"}, {"members": {"a": "u1"}})
	not rules.allow with input as call("inref", {"sub": "u1"}, {"members": "u1"})
	rules.allow with input as call("notinref", {"sub": "u1"}, {"banned": ["u2"]})
	not rules.allow with input as call("notinref", {"sub": "u2"}, {"banned": ["u2"]})
	not rules.allow with input as call("notinref", {"sub": "u1"}, {"banned": "u2"})
	not rules.allow with input as call("notinref", {"sub": "u1"}, {})
}

test_in_numbers if {
	rules.allow with input as call("innum", null, {"n": 2.5})
	rules.allow with input as call("innum", null, {"n": -3.0})
	not rules.allow with input as call("innum", null, {"n": "1"})
}

test_exists if {
	rules.allow with input as call("exists", null, {"coupon": null})
	rules.allow with input as call("exists", null, {"coupon": false})
	not rules.allow with input as call("exists", null, {})
	not rules.allow with input as call("exists", null, {"coupon_": 1})
	rules.allow with input as call("absent", {"sub": "u"}, null)
	not rules.allow with input as call("absent", {"banned": false}, null)
}

test_dates if {
	rules.allow with input as call("before", null, {"at": "2029-12-31T23:59:59.999999999Z"})
	rules.allow with input as call("before", null, {"at": "2030-01-01T00:30:00+01:00"})
	not rules.allow with input as call("before", null, {"at": "2030-01-01T00:00:00Z"})
	rules.allow with input as call("before", null, {"at": "2029-12-31"})
	not rules.allow with input as call("before", null, {"at": "2029-02-29"})
	rules.allow with input as call("before", null, {"at": "2028-02-29"})
	not rules.allow with input as call("before", null, {"at": "2029-13-01"})
	not rules.allow with input as call("before", null, {"at": "yesterday"})
	not rules.allow with input as call("before", null, {"at": 1700000000})
	not rules.allow with input as call("before", null, {"at": "1500-01-01"})
	rules.allow with input as call("sameday", null, {"at": "2026-11-30T00:00:00Z"})
	rules.allow with input as call("sameday", null, {"at": "2026-11-29T19:00:00-05:00"})
	not rules.allow with input as call("sameday", null, {"at": "2026-11-30T00:00:01Z"})
	rules.allow with input as call("expiry", {"until": "2027-01-01"}, {"at": "2026-06-01T12:00:00Z"})
	not rules.allow with input as call("expiry", {"until": "2027-01-01"}, {"at": "2028-06-01T12:00:00Z"})
}

test_token if {
	rules.allow with input as object.union(call("token", {"sub": "u"}, null), {"token": "t0k3n"})
	rules.decision == deny(403, "permission denied") with input as object.union(call("token", {"sub": "u"}, null), {"token": "other"})
	rules.decision == deny(401, "authentication required") with input as call("token", null, null)
}

ack(_, _, _) := {"ack": true}

nack(_, _, _) := {"ack": false}

yes(_, _, _) := {"ack": "yes"}

# check answers like an authorization function that reads what it is sent.
check("auth", "check", p) := {"ack": true} if {
	p.service == "shop"
	p.params.amount < 10
	p.auth.sub == "u1"
	p.token == null
}

test_func if {
	rules.allow with input as call("func", null, null) with funcmesh.call as ack
	not rules.allow with input as call("func", null, null) with funcmesh.call as nack
	not rules.allow with input as call("func", null, null) with funcmesh.call as yes
	rules.allow with input as call("func", {"sub": "u1"}, {"amount": 5}) with funcmesh.call as check
	not rules.allow with input as call("func", {"sub": "u1"}, {"amount": 50}) with funcmesh.call as check
	not rules.allow with input as call("func", {"sub": "u2"}, {"amount": 5}) with funcmesh.call as check
	rules.decision == deny(403, "permission denied") with input as call("func", null, null) with funcmesh.call as nack
}

send_ok(req) := {"status_code": 200, "body": {"ack": true}} if {
	req.method == "POST"
	req.url == "https://hooks.example.com/check"
	req.body.params.amount == 5
	req.body.token == "t0k3n"
	req.headers.authorization == "Bearer t0k3n"
	req.enable_redirect == false
	req.raise_error == false
}

send_created(_) := {"status_code": 201, "body": {"ack": true}}

send_500(_) := {"status_code": 500, "body": {"ack": true}}

send_302(_) := {"status_code": 302, "body": null}

send_yes(_) := {"status_code": 200, "body": {"ack": "yes"}}

send_error(_) := {"status_code": 0, "error": {"code": "eval_http_send_network_error", "message": "refused"}}

test_webhook if {
	rules.allow with input as object.union(call("webhook", {"sub": "u1"}, {"amount": 5}), {"token": "t0k3n"}) with http.send as send_ok
	not rules.allow with input as call("webhook", {"sub": "u1"}, {"amount": 5}) with http.send as send_ok
	rules.allow with input as call("webhook", null, null) with http.send as send_created
	not rules.allow with input as call("webhook", null, null) with http.send as send_500
	not rules.allow with input as call("webhook", null, null) with http.send as send_302
	not rules.allow with input as call("webhook", null, null) with http.send as send_yes
	not rules.allow with input as call("webhook", null, null) with http.send as send_error
}

test_errors if {
	rules.decision == deny(403, "the shop is closed") with input as call("closed", {"sub": "u"}, null)
	rules.decision == deny(403, "admins only") with input as call("errand", {"role": "user"}, {"amount": 500})
	rules.decision == deny(403, "too much") with input as call("errand", {"role": "admin"}, {"amount": 500})
	rules.decision == {"allow": true} with input as call("errand", {"role": "admin"}, {"amount": 5})
	rules.decision == deny(401, "admins only") with input as call("errand", null, {"amount": 5})
	rules.decision == deny(401, "not now") with input as call("errouter", null, null) with funcmesh.call as ack
	rules.decision == deny(403, "not now") with input as call("errouter", {"sub": "u"}, null) with funcmesh.call as nack
	rules.decision == deny(403, "second") with input as call("error", null, {"a": 2, "b": 2})
	rules.allow with input as call("error", null, {"a": 2, "b": 1})
	rules.decision == deny(401, "authentication required") with input as call("errnone", null, {"b": 1})
	rules.decision == deny(403, "b must be 1") with input as call("errnone", {"sub": "u"}, {"b": 2})
}

test_expected_failure if {
	rules.allow with input as call("func", null, null) with funcmesh.call as nack
}
`

// runOPATests runs the opa test tests in tests against the Rego the
// rule config compiles to, with OPA's own tester, and returns the names
// of the tests that passed and failed.
func runOPATests(t *testing.T, rules, tests string) (passed, failed []string) {
	t.Helper()
	cfg, err := authz.ParseRules([]byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	src, err := cfg.Rego()
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]*ast.Module{}
	for name, text := range map[string]string{"rules.rego": src, "rules_test.rego": tests} {
		m, err := ast.ParseModuleWithOpts(name, text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, text)
		}
		modules[name] = m
	}
	ctx := context.Background()
	store := inmem.New()
	txn := storage.NewTransactionOrDie(ctx, store)
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().SetCompiler(ast.NewCompiler()).SetStore(store).
		SetModules(modules).RaiseBuiltinErrors(true).RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	for r := range ch {
		if r.Error != nil {
			t.Errorf("%s: %v", r.Name, r.Error)
		}
		if r.Pass() {
			passed = append(passed, r.Name)
		} else {
			failed = append(failed, r.Name)
		}
	}
	slices.Sort(passed)
	if t.Failed() {
		t.Logf("the module:\n%s", src)
	}
	return passed, failed
}

func TestAllRuleKindsWithOPATester(t *testing.T) {
	t.Parallel()
	passed, failed := runOPATests(t, allKindsRules, allKindsTests)
	want := []string{"test_dates", "test_errors", "test_exists", "test_func", "test_in", "test_in_numbers",
		"test_in_reference", "test_not_in", "test_token", "test_webhook"}
	if strings.Join(passed, " ") != strings.Join(want, " ") {
		t.Errorf("passed %v; want %v", passed, want)
	}
	if len(failed) != 1 || failed[0] != "test_expected_failure" {
		t.Errorf("failed %v; want only test_expected_failure", failed)
	}
}

// TestRegoPolicyCallWithOPATester: a hand-written policy that calls
// functions is tested with opa test, funcmesh.call replaced by a Rego
// function through with.
func TestRegoPolicyCallWithOPATester(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz

default allow := false

allow if {
	input.function == "watch"
	funcmesh.call("accounts", "plan", {"user": input.auth.sub}).plan == "premium"
}
`
	const tests = `package funcmesh.authz_test

import data.funcmesh.authz

plans(_, _, params) := {"plan": "premium"} if params.user == "u1"

plans(_, _, params) := {"plan": "free"} if params.user != "u1"

test_premium if authz.allow with input as {"function": "watch", "auth": {"sub": "u1"}} with funcmesh.call as plans

test_free if not authz.allow with input as {"function": "watch", "auth": {"sub": "u2"}} with funcmesh.call as plans

test_call_fails if not authz.allow with input as {"function": "watch", "auth": {"sub": "u1"}}
`
	modules := map[string]*ast.Module{}
	for name, text := range map[string]string{"policy.rego": policy, "policy_test.rego": tests} {
		m, err := ast.ParseModuleWithOpts(name, text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		modules[name] = m
	}
	ctx := context.Background()
	store := inmem.New()
	txn := storage.NewTransactionOrDie(ctx, store)
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().SetCompiler(ast.NewCompiler()).SetStore(store).
		SetModules(modules).RaiseBuiltinErrors(true).RunTests(ctx, txn)
	if err != nil {
		t.Fatal(err)
	}
	var passed []string
	for r := range ch {
		if !r.Pass() {
			t.Errorf("%s failed: %v", r.Name, r.Error)
			continue
		}
		passed = append(passed, r.Name)
	}
	if len(passed) != 3 {
		t.Errorf("passed %v; want all 3", passed)
	}
}
