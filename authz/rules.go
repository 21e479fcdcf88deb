package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/funcmesh/funcmesh/transport"
)

// RuleConfig is the Space-Cloud-style rule config: a rule per function of
// each service, with "default" standing for any other service or function.
// Its JSON form is
//
//	{"services": {"payments": {"functions": {
//	    "charge":  {"rule": {"rule": "authenticated"}},
//	    "default": {"rule": {"rule": "deny"}}}},
//	  "default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}
//
// The rule for a call to service s, function f is the first of
// services.s.functions.f, services.s.functions.default,
// services.default.functions.f and services.default.functions.default that
// exists; when none does the call is denied. [ParseRules] reads the JSON
// form; [RuleConfig.Rego] compiles a config to the Rego module that
// defines its meaning, which is what the [Authorizer] evaluates.
type RuleConfig struct {
	Services map[string]ServiceRules `json:"services"`
}

// ServiceRules holds the rules of one service, by function name.
type ServiceRules struct {
	Functions map[string]FunctionRules `json:"functions"`
}

// FunctionRules holds the rule of one function.
type FunctionRules struct {
	Rule Rule `json:"rule"`
}

// DefaultName is the service or function name in a [RuleConfig] that
// stands for every name the config does not list.
const DefaultName = "default"

// The rule kinds, the values of [Rule.Kind].
const (
	KindAllow         = "allow"         // always allows
	KindDeny          = "deny"          // always denies
	KindAuthenticated = "authenticated" // allows any caller with claims
	KindMatch         = "match"         // compares F1 and F2 with Eval
	KindAnd           = "and"           // allows when every clause allows
	KindOr            = "or"            // allows when some clause allows
)

// Rule is one node of a rule tree.
//
// A match rule compares F1 with F2 using Eval, one of == != < <= > >=.
// Each operand is a literal (a string, a number or a bool) or a reference
// to the caller's claims, "args.auth.<path>", or to the call's params,
// "args.params.<path>", where <path> is one or more object keys separated
// by dots (so a key can contain no dot). Type, one of "string", "number" or
// "bool", says what the operands are compared as: a reference whose value
// is of another type, or is missing, makes the match false (a number is
// never equal to a string of digits). Without Type, the operands are
// compared as the type of a literal operand; two references are compared
// with == or != as whatever JSON values they hold, and need a Type for the
// ordering operators. Ordering works on numbers and strings only.
//
// Eval "in" and "notIn" test whether F1 is (is not) an element of F2, an
// array literal of one type (["admin", "clerk"]) or a reference to an
// array; a missing F1 or an F2 that is not an array makes both false. An
// operand "utils.exists(args.auth.<path>)" (or args.params) is a bool:
// true when the reference has a value other than null.
type Rule struct {
	Kind    string `json:"rule"`
	Eval    string `json:"eval,omitempty"`
	Type    string `json:"type,omitempty"`
	F1      any    `json:"f1,omitempty"`
	F2      any    `json:"f2,omitempty"`
	Clauses []Rule `json:"clauses,omitempty"`

	// Error is the message a denial by this rule carries, instead of
	// "permission denied" (or "authentication required"); only the rule
	// of a function, not a clause, may have one.
	Error string `json:"error,omitempty"`
}

// The operand types of a match rule, the values of [Rule.Type].
const (
	TypeString = "string"
	TypeNumber = "number"
	TypeBool   = "bool"
)

// RuleError is one problem in a rule config: Path names the place in the
// config, in the form services.payments.functions.charge.rule.clauses[1].eval.
type RuleError struct {
	Path string
	Msg  string
}

// Error implements error.
func (e *RuleError) Error() string {
	if e.Path == "" {
		return "authz: rule config: " + e.Msg
	}
	return "authz: rule config: " + e.Path + ": " + e.Msg
}

// maxRuleDepth bounds the nesting of clauses, so that neither the
// validation nor the generated Rego can be made arbitrarily deep.
const maxRuleDepth = 32

// maxRuleErrors bounds how many problems one error reports.
const maxRuleErrors = 20

// ParseRules decodes and validates a rule config in its JSON form. Unknown
// fields, values of the wrong JSON type and every check of
// [RuleConfig.Validate] are errors; the returned error joins one
// [*RuleError] per problem (at most 20), each naming its path.
func ParseRules(data []byte) (*RuleConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("authz: rule config: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("authz: rule config: trailing data after the JSON value")
	}
	p := &ruleParser{}
	cfg := p.config(doc)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseServiceRules decodes and validates the rules of one service in the
// form Space Cloud's documentation writes them,
//
//	{"functions": {"charge": {"rule": {"rule": "authenticated"}}}}
//
// with the checks of [ParseRules]; each error's path starts at
// services.<service>, as in the whole config.
func ParseServiceRules(service string, data []byte) (*ServiceRules, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("authz: rule config of service %q: %w", service, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("authz: rule config of service %q: trailing data after the JSON value", service)
	}
	p := &ruleParser{}
	cfg := p.config(map[string]any{"services": map[string]any{service: doc}})
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sr := cfg.Services[service]
	return &sr, nil
}

// ruleParser turns the generic JSON value into a RuleConfig, collecting
// errors about the shape (unknown fields, wrong JSON types).
type ruleParser struct {
	errs []error
}

func (p *ruleParser) fail(path, format string, args ...any) {
	if len(p.errs) < maxRuleErrors {
		p.errs = append(p.errs, &RuleError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
}

func (p *ruleParser) err() error { return errors.Join(p.errs...) }

// object returns v as an object, or nil after reporting why it is not one.
// With allowed keys, any other key is reported as unknown.
func (p *ruleParser) object(path string, v any, allowed ...string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		p.fail(path, "want an object, got %s", jsonKind(v))
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if allowed != nil && !slices.Contains(allowed, k) {
			p.fail(joinPath(path, k), "unknown field")
		}
	}
	return m
}

func (p *ruleParser) config(v any) *RuleConfig {
	cfg := &RuleConfig{}
	m := p.object("", v, "services")
	if m == nil {
		return cfg
	}
	sv, ok := m["services"]
	if !ok || sv == nil {
		return cfg
	}
	services := p.object("services", sv)
	if services == nil {
		return cfg
	}
	cfg.Services = make(map[string]ServiceRules, len(services))
	for _, name := range slices.Sorted(maps.Keys(services)) {
		path := joinPath("services", name)
		sm := p.object(path, services[name], "functions")
		if sm == nil {
			continue
		}
		var svc ServiceRules
		if fv, ok := sm["functions"]; ok && fv != nil {
			if fns := p.object(path+".functions", fv); fns != nil {
				svc.Functions = make(map[string]FunctionRules, len(fns))
				for _, fname := range slices.Sorted(maps.Keys(fns)) {
					fpath := joinPath(path+".functions", fname)
					fm := p.object(fpath, fns[fname], "rule")
					if fm == nil {
						continue
					}
					rv, ok := fm["rule"]
					if !ok {
						p.fail(fpath+".rule", "missing")
						continue
					}
					svc.Functions[fname] = FunctionRules{Rule: p.rule(fpath+".rule", rv, 0)}
				}
			}
		}
		cfg.Services[name] = svc
	}
	return cfg
}

func (p *ruleParser) rule(path string, v any, depth int) Rule {
	m := p.object(path, v, "rule", "eval", "type", "f1", "f2", "clauses", "error")
	if m == nil {
		return Rule{}
	}
	var r Rule
	r.Kind = p.str(path+".rule", m["rule"])
	if e, ok := m["eval"]; ok {
		r.Eval = p.str(path+".eval", e)
	}
	if t, ok := m["type"]; ok {
		r.Type = p.str(path+".type", t)
	}
	r.F1, r.F2 = m["f1"], m["f2"]
	if e, ok := m["error"]; ok {
		r.Error = p.str(path+".error", e)
	}
	if cv, ok := m["clauses"]; ok {
		cs, ok := cv.([]any)
		if !ok {
			p.fail(path+".clauses", "want an array, got %s", jsonKind(cv))
			return r
		}
		if depth >= maxRuleDepth {
			p.fail(path+".clauses", "nested more than %d deep", maxRuleDepth)
			return r
		}
		r.Clauses = make([]Rule, len(cs))
		for i, c := range cs {
			r.Clauses[i] = p.rule(fmt.Sprintf("%s.clauses[%d]", path, i), c, depth+1)
		}
	}
	return r
}

func (p *ruleParser) str(path string, v any) string {
	if v == nil {
		return "" // reported by Validate as missing
	}
	s, ok := v.(string)
	if !ok {
		p.fail(path, "want a string, got %s", jsonKind(v))
	}
	return s
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a bool"
	}
	return fmt.Sprintf("%T", v)
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// joinPath appends a map key to a config path, quoting keys that are not
// plain identifiers so that the path stays unambiguous.
func joinPath(path, key string) string {
	if path == "" && identRE.MatchString(key) {
		return key
	}
	if identRE.MatchString(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// Validate reports every problem in c (at most 20), each a [*RuleError]
// naming its path: service and function names that are not valid names
// (see [transport.ValidateName]), unknown rule kinds, eval operators and
// types, clauses on a rule that takes none or none on and/or, operands
// that are neither literals nor args.auth/args.params references, literals
// of the wrong type, ordering on bools, and nesting deeper than 32.
func (c *RuleConfig) Validate() error {
	if c == nil {
		return &RuleError{Msg: "nil config"}
	}
	v := &ruleParser{}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		path := joinPath("services", name)
		if err := transport.ValidateName(name); err != nil {
			v.fail(path, "%v", err)
		}
		fns := c.Services[name].Functions
		for _, fname := range slices.Sorted(maps.Keys(fns)) {
			fpath := joinPath(path+".functions", fname)
			if err := transport.ValidateName(fname); err != nil {
				v.fail(fpath, "%v", err)
			}
			r := fns[fname].Rule
			validateRule(v, fpath+".rule", &r, 0)
		}
	}
	if len(v.errs) > 0 {
		return v.err()
	}
	return nil
}

var evalOps = []string{"==", "!=", "<", "<=", ">", ">=", "in", "notIn"}

func validateRule(v *ruleParser, path string, r *Rule, depth int) {
	if depth > maxRuleDepth {
		v.fail(path, "nested more than %d deep", maxRuleDepth)
		return
	}
	if r.Error != "" && depth > 0 {
		v.fail(path+".error", "only the rule of a function may carry an error message, not a clause")
	}
	noMatchFields := func() {
		for _, f := range []struct {
			name string
			set  bool
		}{{"eval", r.Eval != ""}, {"type", r.Type != ""}, {"f1", r.F1 != nil}, {"f2", r.F2 != nil}} {
			if f.set {
				v.fail(path+"."+f.name, "not used by a %q rule", r.Kind)
			}
		}
	}
	switch r.Kind {
	case KindAllow, KindDeny, KindAuthenticated:
		noMatchFields()
		if r.Clauses != nil {
			v.fail(path+".clauses", "not used by a %q rule", r.Kind)
		}
	case KindAnd, KindOr:
		noMatchFields()
		if len(r.Clauses) == 0 {
			v.fail(path+".clauses", "a %q rule needs at least one clause", r.Kind)
		}
		for i := range r.Clauses {
			validateRule(v, fmt.Sprintf("%s.clauses[%d]", path, i), &r.Clauses[i], depth+1)
		}
	case KindMatch:
		if r.Clauses != nil {
			v.fail(path+".clauses", "not used by a %q rule", r.Kind)
		}
		if _, err := r.match(); err != nil {
			var re *RuleError
			if errors.As(err, &re) {
				v.fail(path+"."+re.Path, "%s", re.Msg)
			}
		}
	case "":
		v.fail(path+".rule", "missing; want one of allow, deny, authenticated, match, and, or")
	default:
		v.fail(path+".rule", "unknown rule kind %q; want one of allow, deny, authenticated, match, and, or", r.Kind)
	}
}

// operand is a validated match operand: a reference (input path segments
// under root "auth" or "params") or a literal.
type operand struct {
	root   string   // "auth" or "params" for a reference, "" for a literal
	path   []string // the keys under input.<root>
	lit    any      // string, json.Number or bool
	exists bool     // utils.exists(<the reference>): a bool
}

func (o operand) typ() string {
	if o.exists {
		return TypeBool
	}
	if a, ok := o.lit.([]any); ok {
		if len(a) == 0 {
			return ""
		}
		return operand{lit: a[0]}.typ()
	}
	switch o.lit.(type) {
	case string:
		return TypeString
	case json.Number:
		return TypeNumber
	case bool:
		return TypeBool
	}
	return ""
}

// matchSpec is a validated match rule.
type matchSpec struct {
	op     string
	typ    string // "" when compared as whatever the values are
	f1, f2 operand
}

// match validates a match rule. Its errors are *RuleError with Path
// relative to the rule (eval, type, f1, f2).
func (r *Rule) match() (matchSpec, error) {
	m := matchSpec{op: r.Eval, typ: r.Type}
	switch {
	case r.Eval == "":
		return m, &RuleError{Path: "eval", Msg: "missing; want one of " + strings.Join(evalOps, " ")}
	case !slices.Contains(evalOps, r.Eval):
		return m, &RuleError{Path: "eval", Msg: fmt.Sprintf("unknown operator %q; want one of %s", r.Eval, strings.Join(evalOps, " "))}
	}
	switch r.Type {
	case "", TypeString, TypeNumber, TypeBool:
	default:
		return m, &RuleError{Path: "type", Msg: fmt.Sprintf("unknown type %q; want string, number or bool", r.Type)}
	}
	var err error
	if m.f1, err = parseOperand("f1", r.F1); err != nil {
		return m, err
	}
	if m.f2, err = parseOperand("f2", r.F2); err != nil {
		return m, err
	}
	if m.typ == "" {
		if t := m.f1.typ(); t != "" {
			m.typ = t
		} else {
			m.typ = m.f2.typ()
		}
	}
	for _, f := range []struct {
		name string
		o    operand
	}{{"f1", m.f1}, {"f2", m.f2}} {
		if t := f.o.typ(); t != "" && t != m.typ && !(f.o.exists && m.typ == TypeBool) {
			return m, &RuleError{Path: f.name, Msg: fmt.Sprintf("%s literal %v compared as %s", t, f.o.lit, m.typ)}
		}
	}
	_, f1Array := m.f1.lit.([]any)
	_, f2Array := m.f2.lit.([]any)
	member := m.op == "in" || m.op == "notIn"
	switch {
	case f1Array:
		return m, &RuleError{Path: "f1", Msg: "an array literal may only be f2 of in or notIn"}
	case f2Array && !member:
		return m, &RuleError{Path: "f2", Msg: "an array literal may only be f2 of in or notIn"}
	case member && m.f2.root == "" && !f2Array:
		return m, &RuleError{Path: "f2", Msg: fmt.Sprintf("%s needs an array: a literal like [\"a\", \"b\"] or a reference", m.op)}
	case member:
		return m, nil
	}
	ordering := m.op != "==" && m.op != "!="
	switch {
	case ordering && m.typ == "":
		return m, &RuleError{Path: "type", Msg: fmt.Sprintf("needed to compare two references with %s", m.op)}
	case ordering && m.typ == TypeBool:
		return m, &RuleError{Path: "eval", Msg: fmt.Sprintf("%s does not compare bools", m.op)}
	}
	return m, nil
}

// parseOperand reads f1 or f2: a reference string args.auth.<path> or
// args.params.<path>, any other string, a number or a bool.
func parseOperand(name string, v any) (operand, error) {
	switch x := v.(type) {
	case nil:
		return operand{}, &RuleError{Path: name, Msg: "missing"}
	case string:
		if inner, ok := strings.CutPrefix(x, "utils.exists("); ok {
			inner, ok = strings.CutSuffix(inner, ")")
			o, err := parseOperand(name, inner)
			if !ok || err != nil || o.root == "" {
				return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad %.60q: want utils.exists(args.auth.<path>) or utils.exists(args.params.<path>)", x)}
			}
			o.exists = true
			return o, nil
		}
		rest, ok := strings.CutPrefix(x, "args.")
		if !ok {
			return operand{lit: x}, nil
		}
		root, path, _ := strings.Cut(rest, ".")
		if root != "auth" && root != "params" {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad reference %q: want args.auth.<path> or args.params.<path>", x)}
		}
		if path == "" {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad reference %q: no path after args.%s", x, root)}
		}
		keys := strings.Split(path, ".")
		if slices.Contains(keys, "") {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad reference %q: empty key", x)}
		}
		return operand{root: root, path: keys}, nil
	case []any:
		var typ string
		for i, e := range x {
			o, err := parseOperand(fmt.Sprintf("%s[%d]", name, i), e)
			if err != nil {
				return operand{}, err
			}
			switch {
			case o.root != "":
				return operand{}, &RuleError{Path: fmt.Sprintf("%s[%d]", name, i), Msg: "an array holds literals only, not references"}
			case o.typ() == "":
				return operand{}, &RuleError{Path: fmt.Sprintf("%s[%d]", name, i), Msg: "an array holds strings, numbers or bools"}
			case i > 0 && o.typ() != typ:
				return operand{}, &RuleError{Path: fmt.Sprintf("%s[%d]", name, i), Msg: fmt.Sprintf("%s in an array of %ss", o.typ(), typ)}
			}
			typ = o.typ()
			x[i] = o.lit
		}
		return operand{lit: x}, nil
	case bool:
		return operand{lit: x}, nil
	case json.Number:
		if !numberOK(string(x)) {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad number %.40q: want a JSON number of at most %d characters with an exponent within ±%d", string(x), maxNumberLen, maxNumberExponent)}
		}
		return operand{lit: x}, nil
	}
	// Numbers written in Go rather than decoded from JSON.
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return operand{lit: json.Number(strconv.FormatInt(rv.Int(), 10))}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return operand{lit: json.Number(strconv.FormatUint(rv.Uint(), 10))}, nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad number %v", f)}
		}
		return operand{lit: json.Number(strconv.FormatFloat(f, 'g', -1, 64))}, nil
	}
	return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("want a string, a number or a bool, got %T", v)}
}
