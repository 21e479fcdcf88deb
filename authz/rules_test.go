package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/funcmesh/funcmesh/authz"
)

// semanticsRules exercises every rule kind, nesting, typed matches and
// every step of the fallback chain.
const semanticsRules = `{"services": {
	"payments": {"functions": {
		"charge":  {"rule": {"rule": "authenticated"}},
		"refund":  {"rule": {"rule": "and", "clauses": [
			{"rule": "authenticated"},
			{"rule": "match", "eval": "==", "f1": "args.auth.role", "f2": "admin"}]}},
		"view":    {"rule": {"rule": "or", "clauses": [
			{"rule": "match", "eval": "==", "type": "bool", "f1": "args.params.public", "f2": true},
			{"rule": "authenticated"}]}},
		"limit":   {"rule": {"rule": "match", "eval": "<=", "type": "number", "f1": "args.params.amount", "f2": 100}},
		"code":    {"rule": {"rule": "match", "eval": "==", "type": "string", "f1": "args.params.code", "f2": "007"}},
		"num":     {"rule": {"rule": "match", "eval": "==", "type": "number", "f1": "args.params.code", "f2": 7}},
		"untyped": {"rule": {"rule": "match", "eval": "==", "f1": "args.params.code", "f2": 7}},
		"name":    {"rule": {"rule": "match", "eval": "<", "type": "string", "f1": "args.params.name", "f2": "m"}},
		"same":    {"rule": {"rule": "match", "eval": "==", "f1": "args.auth.org", "f2": "args.params.org"}},
		"more":    {"rule": {"rule": "match", "eval": ">", "type": "number", "f1": "args.params.b", "f2": "args.params.a"}},
		"notban":  {"rule": {"rule": "match", "eval": "!=", "f1": "args.auth.role", "f2": "banned"}},
		"nested":  {"rule": {"rule": "and", "clauses": [
			{"rule": "or", "clauses": [
				{"rule": "deny"},
				{"rule": "and", "clauses": [
					{"rule": "match", "eval": ">=", "f1": "args.auth.level", "f2": 3},
					{"rule": "match", "eval": "==", "f1": "args.auth.team.name", "f2": "core"}]}]},
			{"rule": "allow"}]}},
		"odd key": {"rule": {"rule": "match", "eval": "==", "f1": "args.params.in", "f2": "args.params.with-dash"}},
		"default": {"rule": {"rule": "deny"}}}},
	"orders": {"functions": {"list": {"rule": {"rule": "allow"}}}},
	"default": {"functions": {
		"audit":   {"rule": {"rule": "authenticated"}},
		"default": {"rule": {"rule": "allow"}}}}}}`

func TestRuleSemantics(t *testing.T) {
	t.Parallel()
	// "odd key" is not a valid function name; take it out for this table.
	cfg, err := authz.ParseRules([]byte(strings.Replace(semanticsRules, `"odd key"`, `"oddkey"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, authz.Rules(cfg))
	user := map[string]any{"sub": "u1", "role": "user", "org": "o1"}
	admin := map[string]any{"sub": "u2", "role": "admin"}
	tests := []struct {
		name   string
		svc    string
		fn     string
		auth   map[string]any
		params any
		want   int // 0 allowed, else the status
	}{
		{"authenticated with claims", "payments", "charge", user, nil, 0},
		{"authenticated anonymous", "payments", "charge", nil, nil, 401},
		{"authenticated with empty claims", "payments", "charge", map[string]any{}, nil, 0},
		{"and: both", "payments", "refund", admin, nil, 0},
		{"and: one", "payments", "refund", user, nil, 403},
		{"and: anonymous", "payments", "refund", nil, nil, 401},
		{"or: first", "payments", "view", nil, map[string]any{"public": true}, 0},
		{"or: second", "payments", "view", user, map[string]any{"public": false}, 0},
		{"or: neither", "payments", "view", nil, map[string]any{"public": false}, 401},
		{"bool typed: string true", "payments", "view", nil, map[string]any{"public": "true"}, 401},
		{"number <=: equal", "payments", "limit", nil, map[string]any{"amount": 100}, 0},
		{"number <=: over", "payments", "limit", nil, map[string]any{"amount": 100.5}, 403},
		{"number <=: string", "payments", "limit", nil, map[string]any{"amount": "50"}, 403},
		{"number <=: missing", "payments", "limit", nil, map[string]any{}, 403},
		{"number <=: no params", "payments", "limit", nil, nil, 403},
		{"number <=: huge and exact", "payments", "limit", nil, json.RawMessage(`{"amount": 100.00000000000000000000000001}`), 403},
		{"string ==", "payments", "code", nil, map[string]any{"code": "007"}, 0},
		{"string ==: a number", "payments", "code", nil, map[string]any{"code": 7}, 403},
		{"number ==: digits string", "payments", "num", nil, map[string]any{"code": "7"}, 403},
		{"number ==", "payments", "num", nil, map[string]any{"code": 7.0}, 0},
		{"inferred number: digits string", "payments", "untyped", nil, map[string]any{"code": "7"}, 403},
		{"inferred number", "payments", "untyped", nil, map[string]any{"code": 7}, 0},
		{"string <", "payments", "name", nil, map[string]any{"name": "alice"}, 0},
		{"string <: not less", "payments", "name", nil, map[string]any{"name": "zed"}, 403},
		{"string <: a number", "payments", "name", nil, map[string]any{"name": 1}, 403},
		{"two refs equal", "payments", "same", user, map[string]any{"org": "o1"}, 0},
		{"two refs differ", "payments", "same", user, map[string]any{"org": "o2"}, 403},
		{"two refs both missing", "payments", "same", map[string]any{}, map[string]any{}, 403},
		{"two refs anonymous", "payments", "same", nil, map[string]any{"org": "o1"}, 401},
		{"two refs typed >", "payments", "more", nil, map[string]any{"a": 1, "b": 2}, 0},
		{"two refs typed >: strings", "payments", "more", nil, map[string]any{"a": "1", "b": "2"}, 403},
		{"!= allowed", "payments", "notban", user, nil, 0},
		{"!= banned", "payments", "notban", map[string]any{"role": "banned"}, nil, 403},
		{"!= missing is false", "payments", "notban", map[string]any{}, nil, 403},
		{"nested: all", "payments", "nested", map[string]any{"level": 3, "team": map[string]any{"name": "core"}}, nil, 0},
		{"nested: low level", "payments", "nested", map[string]any{"level": 2, "team": map[string]any{"name": "core"}}, nil, 403},
		{"nested: other team", "payments", "nested", map[string]any{"level": 5, "team": map[string]any{"name": "edge"}}, nil, 403},
		{"nested: no team", "payments", "nested", map[string]any{"level": 5, "team": "core"}, nil, 403},
		{"odd keys", "payments", "oddkey", nil, map[string]any{"in": 1, "with-dash": 1}, 0},
		{"odd keys differ", "payments", "oddkey", nil, map[string]any{"in": 1, "with-dash": 2}, 403},
		// The fallback chain, one step at a time.
		{"1: services.s.functions.f", "orders", "list", nil, nil, 0},
		{"2: services.s.functions.default", "payments", "unknown", admin, nil, 403},
		{"3: services.default.functions.f", "orders", "audit", nil, nil, 401},
		{"3: unknown service, services.default.functions.f", "shop", "audit", user, nil, 0},
		{"4: services.default.functions.default", "orders", "create", nil, nil, 0},
		{"4: unknown service and function", "shop", "buy", nil, nil, 0},
		{"a function name of another service", "orders", "charge", nil, nil, 0},
		{"the service named default", "default", "audit", nil, nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := a.Authorize(context.Background(), authz.Input{Service: tt.svc, Function: tt.fn, Auth: tt.auth, Params: tt.params})
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if got := d.Status; d.Allow != (tt.want == 0) || got != tt.want {
				t.Errorf("got %+v; want status %d (0: allowed)", d, tt.want)
			}
			// The Authorizer agrees with the whole module.
			if full := evalFull(t, cfg, tt.svc, tt.fn, tt.auth, tt.params); full.Allow != d.Allow || full.Status != d.Status {
				t.Errorf("the whole module decides %+v; the Authorizer %+v", full, d)
			}
		})
	}
}

func TestRulesNothingMatches(t *testing.T) {
	t.Parallel()
	for _, rules := range []string{
		`{}`,
		`{"services": {}}`,
		`{"services": {"payments": {"functions": {"charge": {"rule": {"rule": "allow"}}}}}}`,
		`{"services": {"payments": {}}}`,
	} {
		a := newAuthorizer(t, authz.RulesJSON([]byte(rules)))
		for _, in := range []authz.Input{
			{Service: "payments", Function: "refund", Auth: map[string]any{"sub": "u"}},
			{Service: "orders", Function: "charge"},
		} {
			d, err := a.Authorize(context.Background(), in)
			if err != nil || d.Allow || d.Status != 403 || d.Reason != "permission denied" {
				t.Errorf("%s: %s.%s: got %+v, %v; want a 403 denial", rules, in.Service, in.Function, d, err)
			}
		}
	}
}

// evalFull evaluates the whole generated module with plain OPA, the
// reference the Authorizer must agree with.
func evalFull(t testing.TB, cfg *authz.RuleConfig, svc, fn string, auth map[string]any, params any) authz.Decision {
	t.Helper()
	src, err := cfg.Rego()
	if err != nil {
		t.Fatal(err)
	}
	if raw, ok := params.(json.RawMessage); ok {
		v, err := ast.ValueFromReader(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		params = v
	}
	var authv any
	if auth != nil {
		authv = auth
	}
	input, err := ast.InterfaceToValue(map[string]any{"service": svc, "function": fn, "auth": authv, "params": params, "caller": nil, "http": nil})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rego.New(rego.Query(authz.RulesQuery), rego.Module("rules.rego", src), rego.StrictBuiltinErrors(true), rego.ParsedInput(input)).
		Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("evaluating the module: %v, %v", rs, err)
	}
	m := rs[0].Expressions[0].Value.(map[string]any)
	d := authz.Decision{Allow: m["allow"] == true}
	if s, ok := m["status"].(json.Number); ok {
		n, _ := s.Int64()
		d.Status = int(n)
	}
	return d
}

func TestParseRulesErrors(t *testing.T) {
	t.Parallel()
	wrap := func(rule string) string {
		return `{"services": {"payments": {"functions": {"charge": {"rule": ` + rule + `}}}}}`
	}
	const at = "services.payments.functions.charge.rule"
	tests := []struct {
		name string
		json string
		want string // in the error
	}{
		{"not JSON", `{`, "unexpected EOF"},
		{"trailing data", `{} {}`, "trailing data"},
		{"not an object", `[]`, "want an object, got an array"},
		{"unknown top field", `{"service": {}}`, "service: unknown field"},
		{"services not an object", `{"services": []}`, "services: want an object, got an array"},
		{"service not an object", `{"services": {"a": 1}}`, "services.a: want an object, got a number"},
		{"unknown service field", `{"services": {"a": {"function": {}}}}`, "services.a.function: unknown field"},
		{"function without rule", `{"services": {"a": {"functions": {"b": {}}}}}`, "services.a.functions.b.rule: missing"},
		{"invalid service name", `{"services": {"a.b": {"functions": {}}}}`, `services["a.b"]: transport: invalid name`},
		{"invalid function name", `{"services": {"a": {"functions": {"": {"rule": {"rule": "allow"}}}}}}`, `services.a.functions[""]: transport: invalid name`},
		{"rule not an object", wrap(`"allow"`), at + ": want an object, got a string"},
		{"missing kind", wrap(`{}`), at + ".rule: missing"},
		{"kind not a string", wrap(`{"rule": 1}`), at + ".rule: want a string, got a number"},
		{"unknown kind", wrap(`{"rule": "query"}`), at + `.rule: unknown rule kind "query"`},
		{"unknown field", wrap(`{"rule": "allow", "errors": "x"}`), at + ".errors: unknown field"},
		{"clauses on allow", wrap(`{"rule": "allow", "clauses": []}`), at + `.clauses: not used by a "allow" rule`},
		{"eval on deny", wrap(`{"rule": "deny", "eval": "=="}`), at + `.eval: not used by a "deny" rule`},
		{"and without clauses", wrap(`{"rule": "and"}`), at + `.clauses: a "and" rule needs at least one clause`},
		{"or with empty clauses", wrap(`{"rule": "or", "clauses": []}`), at + `.clauses: a "or" rule needs at least one clause`},
		{"clauses not an array", wrap(`{"rule": "or", "clauses": {}}`), at + ".clauses: want an array, got an object"},
		{"bad eval in a clause", wrap(`{"rule": "and", "clauses": [{"rule": "allow"}, {"rule": "match", "eval": "=~", "f1": 1, "f2": 2}]}`), at + `.clauses[1].eval: unknown operator "=~"`},
		{"missing eval", wrap(`{"rule": "match", "f1": 1, "f2": 2}`), at + ".eval: missing"},
		{"unknown type", wrap(`{"rule": "match", "eval": "==", "type": "int", "f1": 1, "f2": 2}`), at + `.type: unknown type "int"`},
		{"missing f1", wrap(`{"rule": "match", "eval": "==", "f2": 2}`), at + ".f1: missing"},
		{"null f2", wrap(`{"rule": "match", "eval": "==", "f1": 1, "f2": null}`), at + ".f2: missing"},
		{"object f2", wrap(`{"rule": "match", "eval": "==", "f1": 1, "f2": {}}`), at + ".f2: want a string, a number or a bool"},
		{"bad reference root", wrap(`{"rule": "match", "eval": "==", "f1": "args.token.sub", "f2": "x"}`), at + `.f1: bad reference "args.token.sub"`},
		{"reference without path", wrap(`{"rule": "match", "eval": "==", "f1": "args.auth", "f2": "x"}`), at + `.f1: bad reference "args.auth": no path`},
		{"reference with empty key", wrap(`{"rule": "match", "eval": "==", "f1": "args.auth.a..b", "f2": "x"}`), at + `.f1: bad reference "args.auth.a..b": empty key`},
		{"literal of the wrong type", wrap(`{"rule": "match", "eval": "==", "type": "number", "f1": "args.params.n", "f2": "5"}`), at + ".f2: string literal 5 compared as number"},
		{"literals of two types", wrap(`{"rule": "match", "eval": "==", "f1": 1, "f2": "1"}`), at + ".f2: string literal 1 compared as number"},
		{"ordering bools", wrap(`{"rule": "match", "eval": "<", "f1": "args.auth.x", "f2": true}`), at + ".eval: < does not compare bools"},
		{"ordering two refs untyped", wrap(`{"rule": "match", "eval": ">=", "f1": "args.auth.x", "f2": "args.params.y"}`), at + ".type: needed to compare two references with >="},
		{"clauses on match", wrap(`{"rule": "match", "eval": "==", "f1": 1, "f2": 1, "clauses": [{"rule": "allow"}]}`), at + `.clauses: not used by a "match" rule`},
		{"number out of range", wrap(`{"rule": "match", "eval": "==", "f1": "args.auth.n", "f2": 1e999999999}`), at + ".f2: bad number"},
		{"too deep", wrap(strings.Repeat(`{"rule": "and", "clauses": [`, 40) + `{"rule": "allow"}` + strings.Repeat(`]}`, 40)), "nested more than 32 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := authz.ParseRules([]byte(tt.json))
			if err == nil {
				t.Fatalf("ParseRules succeeded: %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRuleErrorPaths(t *testing.T) {
	t.Parallel()
	_, err := authz.ParseRules([]byte(`{"services": {"payments": {"functions": {
		"charge": {"rule": {"rule": "and", "clauses": [{"rule": "allow"}, {"rule": "match", "eval": "=~", "f1": 1, "f2": 2}]}},
		"refund": {"rule": {"rule": "nope"}}}}}}`))
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var re *authz.RuleError
		if !errors.As(e, &re) {
			t.Fatalf("%v is not a *RuleError", e)
		}
		paths = append(paths, re.Path)
	}
	want := []string{"services.payments.functions.charge.rule.clauses[1].eval", "services.payments.functions.refund.rule.rule"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("paths %q; want %q", paths, want)
	}
	if got := err.Error(); !strings.Contains(got, `authz: rule config: services.payments.functions.charge.rule.clauses[1].eval: unknown operator "=~"`) {
		t.Errorf("message %q", got)
	}
}

// TestRulesFromGo checks a config written as Go values, with Go numbers.
func TestRulesFromGo(t *testing.T) {
	t.Parallel()
	cfg := &authz.RuleConfig{Services: map[string]authz.ServiceRules{
		"payments": {Functions: map[string]authz.FunctionRules{
			"charge": {Rule: authz.Rule{Kind: authz.KindMatch, Eval: "<", Type: authz.TypeNumber, F1: "args.params.amount", F2: 10}},
			"refund": {Rule: authz.Rule{Kind: authz.KindMatch, Eval: "<", F1: "args.params.amount", F2: 2.5}},
			"void":   {Rule: authz.Rule{Kind: authz.KindMatch, Eval: "==", F1: "args.params.ok", F2: true}},
		}},
	}}
	a := newAuthorizer(t, authz.Rules(cfg))
	for fn, amount := range map[string]float64{"charge": 9, "refund": 2} {
		d, err := a.Authorize(context.Background(), authz.Input{Service: "payments", Function: fn, Params: map[string]any{"amount": amount}})
		if err != nil || !d.Allow {
			t.Errorf("%s: got %+v, %v; want allowed", fn, d, err)
		}
	}
	bad := &authz.RuleConfig{Services: map[string]authz.ServiceRules{"a": {Functions: map[string]authz.FunctionRules{
		"b": {Rule: authz.Rule{Kind: authz.KindMatch, Eval: "==", F1: "args.params.x", F2: []int{1}}},
		"c": {Rule: authz.Rule{Kind: authz.KindMatch, Eval: "==", F1: "args.params.x", F2: nanValue()}},
	}}}}
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "services.a.functions.b.rule.f2: an array literal may only be f2 of in or notIn") ||
		!strings.Contains(err.Error(), "services.a.functions.c.rule.f2: bad number NaN") {
		t.Errorf("Validate = %v", err)
	}
}

// TestRulesConcurrentFirstCalls makes the first calls to many functions
// at once, from many goroutines. Run it with -race.
func TestRulesConcurrentFirstCalls(t *testing.T) {
	t.Parallel()
	cfg, err := authz.ParseRules([]byte(strings.Replace(semanticsRules, `"odd key"`, `"oddkey"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, authz.Rules(cfg))
	fns := []string{"charge", "refund", "view", "limit", "code", "num", "untyped", "name", "same", "more", "notban", "nested", "oddkey", "unknown", "list", "audit"}
	svcs := []string{"payments", "orders", "default", "shop"}
	type call struct {
		svc, fn string
		d       authz.Decision
		err     error
	}
	calls := make([]call, 0, len(fns)*len(svcs))
	for _, s := range svcs {
		for _, fn := range fns {
			calls = append(calls, call{svc: s, fn: fn})
		}
	}
	auth, params := map[string]any{"role": "admin"}, map[string]any{"amount": 1}
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &calls[i]
			c.d, c.err = a.Authorize(context.Background(), authz.Input{Service: c.svc, Function: c.fn, Auth: auth, Params: params})
		}()
	}
	wg.Wait()
	for _, c := range calls {
		if c.err != nil {
			t.Errorf("%s.%s: %v", c.svc, c.fn, c.err)
			continue
		}
		if full := evalFull(t, cfg, c.svc, c.fn, auth, params); full.Allow != c.d.Allow || full.Status != c.d.Status {
			t.Errorf("%s.%s: Authorizer %+v, module %+v", c.svc, c.fn, c.d, full)
		}
	}
}

// TestNegativeLiteralFirst is a config whose match starts with a negative
// number: in the generated Rego, -1 at the start of a line continued the
// line above as a subtraction, and the module did not compile.
func TestNegativeLiteralFirst(t *testing.T) {
	t.Parallel()
	cfg, err := authz.ParseRules([]byte(`{"services": {"payments": {"functions": {"charge": {"rule": {"rule": "match", "eval": "<", "f1": -1.5e3, "f2": "args.params.amount"}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, authz.Rules(cfg))
	for _, tt := range []struct {
		amount any
		allow  bool
	}{{0, true}, {-1500, false}, {-2000, false}, {"0", false}} {
		params := map[string]any{"amount": tt.amount}
		d, err := a.Authorize(context.Background(), authz.Input{Service: "payments", Function: "charge", Params: params})
		if err != nil || d.Allow != tt.allow {
			t.Errorf("amount %v: got %+v, %v; want allow %v", tt.amount, d, err, tt.allow)
		}
		if full := evalFull(t, cfg, "payments", "charge", nil, params); full.Allow != d.Allow || full.Status != d.Status {
			t.Errorf("amount %v: the whole module decides %+v; the Authorizer %+v", tt.amount, full, d)
		}
	}
}
