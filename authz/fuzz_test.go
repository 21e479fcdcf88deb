package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/funcmesh/funcmesh/authz"
)

// FuzzRules feeds rule configs to ParseRules. A config either fails with
// an error or compiles to Rego the Authorizer loads; then, for a spread of
// calls, the Authorizer (which decides natively, in Go) must decide
// exactly as the whole generated module does: allow, status and reason.
func FuzzRules(f *testing.F) {
	for _, s := range []string{
		designRules,
		strings.Replace(semanticsRules, `"odd key"`, `"oddkey"`, 1),
		`{}`,
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "or", "clauses": [{"rule": "deny"}, {"rule": "match", "eval": "!=", "f1": "args.auth.x", "f2": "args.params.y"}]}}}}}}`,
		`{"services": {"default": {"functions": {"x": {"rule": {"rule": "match", "eval": ">", "f1": "args.params.n", "f2": -1.5e3}}}}}}`,
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "match", "eval": "=~"}}}}}}`,
		`{"services": {"a": []}}`,
		strings.ReplaceAll(allKindsRules, "https://hooks.example.com/check", "http://127.0.0.1:1/check"),
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "match", "eval": "notIn", "f1": "utils.exists(args.token)", "f2": [false, "args.params.public"]}}}}}}`,
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "match", "eval": "<=", "type": "date", "f1": "args.params.at", "f2": "2026-02-29"}}}}}}`,
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "webhook", "url": "http://[::1]:1/x", "error": "no"}}}}}}`,
		`{"functions": {"func1": {"rule": {"rule": "allow"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := authz.ParseRules(data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("ParseRules gave a config and an error %v", err)
			}
			return
		}
		src, err := cfg.Rego()
		if err != nil {
			t.Fatalf("a config that parsed does not compile to Rego: %v", err)
		}
		a, err := authz.New(context.Background(), authz.Rules(cfg), authz.WithCall(fuzzCall))
		if err != nil {
			t.Fatalf("a valid config does not load: %v\n%s", err, src)
		}
		full, err := rego.New(rego.Query(authz.RulesQuery), rego.Module("rules.rego", src), rego.StrictBuiltinErrors(true)).
			PrepareForEval(context.Background())
		if err != nil {
			t.Fatalf("the generated Rego does not prepare: %v\n%s", err, src)
		}
		services := []string{"zz"}
		functions := []string{"zz"}
		for _, s := range slices.Sorted(maps.Keys(cfg.Services)) {
			services = append(services, s)
			functions = append(functions, slices.Sorted(maps.Keys(cfg.Services[s].Functions))...)
		}
		auths := []map[string]any{nil, {"sub": "u", "role": "admin", "x": 1.5, "level": 3},
			{"sub": "u", "role": map[string]any{"name": "admin"}, "x": json.Number("1.50"), "level": "3", "a": map[string]any{"b": []any{"c"}}}}
		params := []string{`null`, `{"amount": 5, "public": true, "code": "007", "n": 0, "y": 1.5, "x": "a", "at": "2026-02-28T23:00:00-02:00"}`,
			`{"amount": 5.0, "public": "true", "code": 7, "n": -0, "y": 15e-1, "x": 1.5, "a": {"b": ["c"]}, "role": "admin", "at": "2026-02-28", "members": ["u", 1]}`}
		for _, s := range services[:min(len(services), 3)] {
			for _, fn := range functions[:min(len(functions), 4)] {
				for _, auth := range auths {
					for _, p := range params {
						in := authz.Input{Service: s, Function: fn, Auth: auth, Params: json.RawMessage(p)}
						if auth != nil {
							in.Token = "t0k3n"
						}
						got, err := a.Authorize(context.Background(), in)
						if err != nil {
							t.Fatalf("%s.%s: %v", s, fn, err)
						}
						want := fullDecision(t, full, in, p)
						if got.Allow != want.Allow || got.Status != want.Status || got.Reason != want.Reason {
							t.Fatalf("%s.%s auth %v params %s: Authorizer %+v, module %+v\n%s", s, fn, auth, p, got, want, src)
						}
					}
				}
			}
		}
	})
}

func fullDecision(t *testing.T, pq rego.PreparedEvalQuery, in authz.Input, params string) authz.Decision {
	pv, err := ast.ValueFromReader(strings.NewReader(params))
	if err != nil {
		t.Fatal(err)
	}
	var auth any
	if in.Auth != nil {
		auth = in.Auth
	}
	doc := map[string]any{"service": in.Service, "function": in.Function, "auth": auth, "params": pv}
	if in.Token != "" {
		doc["token"] = in.Token
	}
	input, err := ast.InterfaceToValue(doc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := authz.PolicyCallContext(context.Background(), fuzzCall, in.Service, in.Function)
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil || len(rs) != 1 {
		t.Fatalf("evaluating the module: %v, %v", rs, err)
	}
	m := rs[0].Expressions[0].Value.(map[string]any)
	d := authz.Decision{Allow: m["allow"] == true}
	if s, ok := m["status"].(json.Number); ok {
		n, _ := s.Int64()
		d.Status = int(n)
	}
	d.Reason, _ = m["reason"].(string)
	return d
}

// FuzzDecodeParams checks the body decoder against encoding/json: it
// accepts only valid JSON, and what it accepts decodes to the same value
// OPA makes of encoding/json's result.
func FuzzDecodeParams(f *testing.F) {
	for _, s := range []string{
		`{"amount": 5}`, `[1, "a", true, null, {"b": [2.5e3]}]`, `123456789012345678901234567890`,
		`{"a": 1, "a": 2}`, `"\ud800"`, "\"\xff\"", `1e999999999`, `[[[[[[[[]]]]]]]]`, `{} {}`, `{`, ``, ` `,
		`-0`, `0.0`, `1E+2`, strings.Repeat("[", 70) + strings.Repeat("]", 70),
		`{"a": {"b": 1, "b": [2]}, "amount": 5, "amount": {"x": 1}}`, `{"a": 5, "user": "u"}`,
		`{"\u0061": {"c": {"d": null}}, "A": 1}`, `{"a": {"B": 1, "b": 2}}`, `[{"amount": 1}]`,
		`{"user": ` + strings.Repeat("[{},", 20) + `{}` + strings.Repeat("]", 20) + `}`,
		// The scanner checks the syntax itself: what json.Valid refuses.
		`"\u12"`, `"\u12g4"`, `"\x"`, `"\`, "\"\t\"", `[1,]`, `{"a":1,}`, `{"a" 1}`, `{"a":}`, `{,}`, `[,1]`,
		`[1 2]`, `tru`, `nul`, `falsey`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `-01`, `1.5e3.2`, ` 1 `, `1 x`,
		`{"a":1}}`, `[[]`, `"a\u00e9\ud83d\ude00"`, "\"\xc3\x28\"", `{"a":[{"b":"c"}],"d":-0.0e-0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := authz.DecodeParams(data, false)
		valid := json.Valid(data)
		if err != nil {
			if valid && !strings.Contains(err.Error(), "deeper than") && !strings.Contains(err.Error(), "out of range") &&
				!strings.Contains(err.Error(), "too large to decode") && !strings.Contains(err.Error(), "letter case") {
				t.Fatalf("valid JSON %q refused: %v", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("invalid JSON %q accepted as %v", data, v)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil {
			t.Fatalf("encoding/json refuses %q: %v", data, err)
		}
		want, err := ast.InterfaceToValue(x)
		if err != nil {
			t.Fatalf("OPA refuses %q, which the decoder took: %v", data, err)
		}
		if v.Compare(want) != 0 {
			t.Fatalf("%q decoded to %v; want %v", data, v, want)
		}
		lazy, err := authz.DecodeParams(data, true)
		if err != nil || lazy.Compare(want) != 0 {
			t.Fatalf("%q decoded lazily to %v, %v; want %v", data, lazy, err, want)
		}
		// Decoding only the parts a policy reads finds, at each of them,
		// what the whole document has there, or nothing where it has
		// nothing.
		paths := [][]string{{"amount"}, {"a", "b"}, {"a", "c", "d"}, {"user"}}
		picked, err := authz.PickParams(data, paths)
		if err != nil {
			t.Fatalf("%q: picking %v: %v", data, paths, err)
		}
		for _, p := range paths {
			got, want := lookupPath(picked, p), lookupPath(v, p)
			if (got == nil) != (want == nil) || got != nil && got.Compare(want) != 0 {
				t.Fatalf("%q: at %v picked %v; the whole document has %v", data, p, got, want)
			}
		}
	})
}

// lookupPath is what a reference input.params.<path> finds in v: nil when
// it is undefined.
func lookupPath(v ast.Value, path []string) ast.Value {
	for _, k := range path {
		obj, ok := v.(ast.Object)
		if !ok {
			return nil
		}
		t := obj.Get(ast.StringTerm(k))
		if t == nil {
			return nil
		}
		v = t.Value
	}
	return v
}

// FuzzRuleTrees builds rule configs from the fuzzer's bytes, so that
// nearly every input is a config that validates, and checks the
// Authorizer's decisions against the whole generated module, as FuzzRules
// does, over calls that reach every entry and the fallbacks, with claims
// and params of every JSON type and numbers written several ways.
func FuzzRuleTrees(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{4, 3, 2, 5, 1, 0, 3, 4, 2, 2, 5, 1, 4, 3, 0, 0, 1})
	f.Add([]byte("random bytes make random trees"))
	f.Fuzz(fuzzRuleTree)
}

func fuzzRuleTree(t *testing.T, data []byte) {
	{
		src := &byteSource{b: data}
		cfg := &authz.RuleConfig{Services: map[string]authz.ServiceRules{}}
		names := []string{"payments", "default", "orders"}
		fnames := []string{"charge", "default", "list"}
		for range 1 + src.next()%4 {
			s := names[src.next()%3]
			if cfg.Services[s].Functions == nil {
				cfg.Services[s] = authz.ServiceRules{Functions: map[string]authz.FunctionRules{}}
			}
			cfg.Services[s].Functions[fnames[src.next()%3]] = authz.FunctionRules{Rule: genRule(src, 0)}
		}
		if cfg.Validate() != nil {
			return // a literal of the wrong type, say: ParseRules' business
		}
		a, err := authz.New(context.Background(), authz.Rules(cfg), authz.WithCall(fuzzCall))
		if err != nil {
			t.Fatalf("a valid config does not load: %v", err)
		}
		rego_, err := cfg.Rego()
		if err != nil {
			t.Fatal(err)
		}
		full, err := rego.New(rego.Query(authz.RulesQuery), rego.Module("rules.rego", rego_), rego.StrictBuiltinErrors(true)).
			PrepareForEval(context.Background())
		if err != nil {
			t.Fatalf("the generated Rego does not prepare: %v\n%s", err, rego_)
		}
		auths := []map[string]any{nil, {}, {"role": "admin", "level": 3}, {"role": "user", "level": "3"},
			{"role": nil, "level": 3.0, "amount": json.Number("5.0"), "team": map[string]any{"name": "core", "list": []any{1.0, "a"}}, "list": []any{1.0, "a"}},
			{"role": true, "level": json.Number("1e2"), "code": -0.0, "team": "core", "public": false, "at": "2026-11-30"}}
		params := []string{`null`, `{"amount": 5, "code": "7", "public": true}`, `{"amount": "5", "code": 7, "public": "true", "level": 3}`,
			`{"amount": 5.0, "code": 7e0, "level": 100, "role": "admin", "team": {"name": "core", "list": [1, "a"]}, "list": [1.0, "a"]}`,
			`{"amount": -0, "code": null, "public": false, "level": 1E2, "team": [1], "list": {}}`, `[1, 2]`, `"admin"`,
			`{"at": "2026-11-30T00:00:00Z", "list": ["admin", "core", 5], "amount": 100, "role": "core"}`}
		for _, s := range []string{"payments", "orders", "zz"} {
			for _, fn := range []string{"charge", "list", "zz"} {
				for _, auth := range auths {
					for _, p := range params {
						in := authz.Input{Service: s, Function: fn, Auth: auth, Params: json.RawMessage(p)}
						if len(auth) > 0 {
							in.Token = "t0k3n"
						}
						got, err := a.Authorize(context.Background(), in)
						if err != nil {
							t.Fatalf("%s.%s: %v", s, fn, err)
						}
						if want := fullDecision(t, full, in, p); got.Allow != want.Allow || got.Status != want.Status || got.Reason != want.Reason {
							t.Fatalf("%s.%s auth %v params %s: Authorizer %+v, module %+v\n%s", s, fn, auth, p, got, want, rego_)
						}
					}
				}
			}
		}
	}
}

type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) next() byte {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return s.b[s.i-1]
}

// genRule makes a rule tree from bytes. Bytes below 0xC0 make the trees
// they made before the Space Cloud kinds (the corpus keeps its meaning);
// higher bytes pick the newer kinds, operators, types, operands and
// error messages.
func genRule(s *byteSource, depth int) authz.Rule {
	kinds := []string{authz.KindAllow, authz.KindDeny, authz.KindAuthenticated, authz.KindMatch, authz.KindAnd, authz.KindOr}
	n := byte(len(kinds))
	if depth >= 3 {
		n = 4 // no more nesting
	}
	b := s.next()
	r := authz.Rule{Kind: kinds[b%n]}
	switch {
	case b >= 0xE0:
		r.Kind = []string{authz.KindFunc, authz.KindWebhook}[b%2]
	case b >= 0xC0:
		r.Error = fmt.Sprintf("e%d", b%4)
	}
	switch r.Kind {
	case authz.KindMatch:
		e := s.next()
		r.Eval = []string{"==", "!=", "<", "<=", ">", ">="}[e%6]
		if e >= 0xC0 {
			r.Eval = []string{"in", "notIn"}[e%2]
		}
		ty := s.next()
		r.Type = []string{"", authz.TypeString, authz.TypeNumber, authz.TypeBool}[ty%4]
		if ty >= 0xC0 {
			r.Type = authz.TypeDate
		}
		r.F1, r.F2 = genOperand(s), genOperand(s)
	case authz.KindAnd, authz.KindOr:
		for range 1 + s.next()%3 {
			r.Clauses = append(r.Clauses, genRule(s, depth+1))
		}
	case authz.KindFunc:
		r.Service, r.Func = "auth", "check"
	case authz.KindWebhook:
		r.URL = "http://127.0.0.1:1/check" // refused at once: denies
	}
	return r
}

func genOperand(s *byteSource) any {
	ops := []any{"args.auth.role", "args.auth.level", "args.params.amount", "args.params.code", "args.params.public", "args.params.level",
		"admin", "7", 7, 3.5, 5, true, false,
		"args.auth.team.name", "args.params.team.name", "args.auth.team", "args.params.team", "args.auth.list", "args.params.list",
		"args.auth.amount", "args.params.role", "args.auth.team.list", "args.params.team.list", "args.auth.public", "args.auth.code",
		"core", "", 100, 1e2, -0.0, 0, json.Number("5.00"), json.Number("-1.5e3"), "3"}
	newer := []any{"args.token", "t0k3n", "utils.exists(args.params.amount)", "utils.exists(args.auth.role)", "utils.exists(args.token)",
		"2026-11-30", "2026-11-30T00:00:00Z", "2026-11-29T19:00:00-05:00", "args.params.at", "args.auth.at",
		[]any{"admin", "core"}, []any{5, 100, json.Number("1e2")}, []any{true}, []any{"args.params.role", "core"}, []any{}}
	b := s.next()
	if b >= 0xC0 {
		return newer[int(b)%len(newer)]
	}
	return ops[int(b)%len(ops)]
}

// fuzzCall answers for auth.check as a function might: ack when the
// params amount is 5, an error when it is 100, and not JSON for a token.
func fuzzCall(_ context.Context, service, function string, params []byte) ([]byte, error) {
	var in struct {
		Params struct{ Amount any } `json:"params"`
		Token  any                  `json:"token"`
	}
	json.Unmarshal(params, &in)
	switch {
	case service != "auth" || function != "check":
		return nil, errors.New("no such function")
	case in.Params.Amount == 100.0:
		return nil, errors.New("refused")
	case in.Token != nil && in.Params.Amount == nil:
		return []byte("not json"), nil
	case in.Params.Amount == 5.0:
		return []byte(`{"ack": true}`), nil
	}
	return []byte(`{"ack": false}`), nil
}

// FuzzRuleDates holds the two definitions of a date to each other: what
// the generated module's date_ns accepts (without time.parse_rfc3339_ns
// ever failing) is what the validator of literals accepts, at the same
// instant; and whatever Go's RFC 3339 parser makes of a string the
// module accepts.
func FuzzRuleDates(f *testing.F) {
	for _, s := range []string{"2026-11-30", "2026-11-30T12:00:00Z", "2026-11-30T12:00:00.123456789+05:30", "2024-02-29",
		"2023-02-29", "1677-12-31", "1678-01-01T00:00:00+23:59", "2261-12-31T23:59:59-23:59", "2262-01-01", "2026-13-01",
		"2026-11-30T24:00:00Z", "2026-11-30t12:00:00z", "2026-11-30T12:00:00", "2026-11-30 12:00:00Z", "", "x", "2026-11-31"} {
		f.Add(s)
	}
	cfg, err := authz.ParseRules([]byte(`{"services": {"a": {"functions": {"b": {"rule": {"rule": "match", "type": "date", "eval": "==", "f1": "args.params.at", "f2": "2026-11-30"}}}}}}`))
	if err != nil {
		f.Fatal(err)
	}
	src, err := cfg.Rego()
	if err != nil {
		f.Fatal(err)
	}
	pq, err := rego.New(rego.Query("x := data.funcmesh.rules.date_ns(input.s)"), rego.Module("rules.rego", src), rego.StrictBuiltinErrors(true)).
		PrepareForEval(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := pq.Eval(context.Background(), rego.EvalInput(map[string]any{"s": s}))
		if err != nil {
			t.Fatalf("%q: date_ns failed: %v", s, err)
		}
		want, ok := authz.ParseDate(s)
		if ok != (len(rs) == 1) {
			t.Fatalf("%q: the validator says %v, the module %v", s, ok, rs)
		}
		if !ok {
			return
		}
		if got := rs[0].Bindings["x"].(json.Number); string(got) != fmt.Sprint(want.UnixNano()) {
			t.Fatalf("%q: the module says %s, the validator %d", s, got, want.UnixNano())
		}
	})
}
