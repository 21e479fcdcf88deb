package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
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
// calls, the Authorizer (partial evaluation, cached per service and
// function) must decide exactly as the whole generated module does.
func FuzzRules(f *testing.F) {
	for _, s := range []string{
		designRules,
		strings.Replace(semanticsRules, `"odd key"`, `"oddkey"`, 1),
		`{}`,
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "or", "clauses": [{"rule": "deny"}, {"rule": "match", "eval": "!=", "f1": "args.auth.x", "f2": "args.params.y"}]}}}}}}`,
		`{"services": {"default": {"functions": {"x": {"rule": {"rule": "match", "eval": ">", "f1": "args.params.n", "f2": -1.5e3}}}}}}`,
		`{"services": {"a": {"functions": {"b": {"rule": {"rule": "match", "eval": "=~"}}}}}}`,
		`{"services": {"a": []}}`,
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
		a, err := authz.New(context.Background(), authz.Rules(cfg))
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
		auths := []map[string]any{nil, {"sub": "u", "role": "admin", "x": 1.5, "level": 3}}
		params := []string{`null`, `{"amount": 5, "public": true, "code": "007", "n": 0, "y": 1.5, "x": "a"}`}
		for _, s := range services[:min(len(services), 3)] {
			for _, fn := range functions[:min(len(functions), 4)] {
				for _, auth := range auths {
					for _, p := range params {
						in := authz.Input{Service: s, Function: fn, Auth: auth, Params: json.RawMessage(p)}
						got, err := a.Authorize(context.Background(), in)
						if err != nil {
							t.Fatalf("%s.%s: %v", s, fn, err)
						}
						want := fullDecision(t, full, in, p)
						if got.Allow != want.Allow || got.Status != want.Status {
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
	input, err := ast.InterfaceToValue(map[string]any{"service": in.Service, "function": in.Function, "auth": auth, "params": pv})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(input))
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

// FuzzDecodeParams checks the body decoder against encoding/json: it
// accepts only valid JSON, and what it accepts decodes to the same value
// OPA makes of encoding/json's result.
func FuzzDecodeParams(f *testing.F) {
	for _, s := range []string{
		`{"amount": 5}`, `[1, "a", true, null, {"b": [2.5e3]}]`, `123456789012345678901234567890`,
		`{"a": 1, "a": 2}`, `"\ud800"`, "\"\xff\"", `1e999999999`, `[[[[[[[[]]]]]]]]`, `{} {}`, `{`, ``, ` `,
		`-0`, `0.0`, `1E+2`, strings.Repeat("[", 70) + strings.Repeat("]", 70),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := authz.DecodeParams(data, false)
		valid := json.Valid(data)
		if err != nil {
			if valid && !strings.Contains(err.Error(), "deeper than") && !strings.Contains(err.Error(), "out of range") {
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
	})
}
