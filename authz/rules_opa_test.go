package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/funcmesh/funcmesh/authz"
)

// designRules is the rule config of the design document.
const designRules = `{"services": {
	"payments": {"functions": {
		"charge":  {"rule": {"rule": "authenticated"}},
		"default": {"rule": {"rule": "deny"}}}},
	"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`

// rulesTests are opa test-style tests of the Rego generated for
// designRules, as a user would write them next to the generated file.
// test_expected_failure must fail: it shows the runner really evaluates.
const rulesTests = `package funcmesh.rules_test

import data.funcmesh.rules

anonymous := {"service": "payments", "function": "charge", "auth": null}

signed_in := {"service": "payments", "function": "charge", "auth": {"sub": "u1"}}

test_charge_needs_claims if {
	rules.decision == {"allow": false, "status": 401, "reason": "authentication required"} with input as anonymous
}

test_charge_with_claims if {
	rules.allow with input as signed_in
	rules.decision == {"allow": true} with input as signed_in
}

test_charge_entry if {
	rules.entry == "payments.charge" with input as signed_in
}

test_other_payments_functions_denied if {
	not rules.allow with input as {"service": "payments", "function": "refund", "auth": {"sub": "u1"}}
	rules.decision.status == 403 with input as {"service": "payments", "function": "refund", "auth": null}
	rules.entry == "payments.default" with input as {"service": "payments", "function": "refund"}
}

test_other_services_allowed if {
	rules.allow with input as {"service": "orders", "function": "list", "auth": null}
	rules.entry == "default.default" with input as {"service": "orders", "function": "list"}
}

test_expected_failure if {
	rules.allow with input as {"service": "payments", "function": "refund", "auth": {"sub": "u1"}}
}
`

func TestGeneratedRegoWithOPATester(t *testing.T) {
	t.Parallel()
	passed, failed := runOPATests(t, designRules, rulesTests)
	want := []string{"test_charge_entry", "test_charge_needs_claims", "test_charge_with_claims", "test_other_payments_functions_denied", "test_other_services_allowed"}
	if strings.Join(passed, " ") != strings.Join(want, " ") {
		t.Errorf("passed %v; want %v", passed, want)
	}
	if len(failed) != 1 || failed[0] != "test_expected_failure" {
		t.Errorf("failed %v; want only test_expected_failure", failed)
	}
}

func TestGeneratedRegoReads(t *testing.T) {
	t.Parallel()
	cfg, err := authz.ParseRules([]byte(designRules))
	if err != nil {
		t.Fatal(err)
	}
	src, err := cfg.Rego()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"package funcmesh.rules",
		"# services.payments.functions.charge.rule: authenticated",
		"rule_1 if is_object(input.auth)",
		`needs_auth := {"payments.charge"}`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("generated Rego lacks %q:\n%s", want, src)
		}
	}
	// Generation is deterministic.
	again, _ := cfg.Rego()
	if again != src {
		t.Error("two generations differ")
	}
}

// TestExamplePolicy runs the opa test tests kept next to the example
// policy of the README, as opa test policy/ would.
func TestExamplePolicy(t *testing.T) {
	t.Parallel()
	res, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).All([]string{"testdata/policy"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store := inmem.New()
	txn := storage.NewTransactionOrDie(ctx, store)
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().SetCompiler(ast.NewCompiler()).SetStore(store).
		SetModules(res.ParsedModules()).RaiseBuiltinErrors(true).RunTests(ctx, txn)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ch {
		n++
		if !r.Pass() {
			t.Errorf("%s failed: %v", r.Name, r.Error)
		}
	}
	if n != 4 {
		t.Errorf("%d tests ran; want 4", n)
	}
	// The Authorizer loads the same directory without the tests.
	a := newAuthorizer(t, authz.Files("testdata/policy"))
	d, err := a.Authorize(ctx, authz.Input{Service: "payments", Function: "charge", Auth: map[string]any{"sub": "u1"}, Params: map[string]any{"amount": 5}})
	if err != nil || !d.Allow {
		t.Errorf("got %+v, %v; want allowed", d, err)
	}
}
