package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"net/url"
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
// defines its meaning, which the [Authorizer] implements natively.
//
// Space Cloud kept one such config per service, {"functions": {...}}:
// [ParseServiceRules], [ServiceRulesJSON] and [RulesDir] read that form.
type RuleConfig struct {
	Services map[string]ServiceRules `json:"services"`
}

// ServiceRules holds the rules of one service, by function name. Its JSON
// form, {"functions": {"charge": {"rule": {...}}}}, is a service's config
// as Space Cloud wrote it.
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
	KindFunc          = "func"          // allows when a function answers {"ack": true}
	KindWebhook       = "webhook"       // allows when a URL answers 2xx with {"ack": true}
)

// ruleKinds lists the kinds for error messages.
const ruleKinds = "allow, deny, authenticated, match, and, or, func, webhook"

// Rule is one node of a rule tree.
//
// A match rule compares F1 with F2 using Eval, one of == != < <= > >=
// in notIn. Each operand is a literal (a string, a number or a bool), a
// reference to the caller's claims, "args.auth.<path>", to the call's
// params, "args.params.<path>", or to the caller's raw bearer token,
// "args.token", where <path> is one or more object keys separated by dots
// (so a key can contain no dot); or "utils.exists(<reference>)", a bool
// that is true when the reference has a value (null included). Type, one
// of "string", "number", "bool" or "date", says what the operands are
// compared as: a reference whose value is of another type, or is missing,
// makes the match false (a number is never equal to a string of digits).
// A date is a string in RFC 3339 form, 2006-01-02T15:04:05Z07:00 (with
// optional fractional seconds) or 2006-01-02 (midnight UTC), between the
// years 1678 and 2261; dates compare as instants, and a string that is
// not such a date makes the match false. Without Type, the operands are
// compared as the type of a literal operand; two references are compared
// with == or != as whatever JSON values they hold, and need a Type for the
// ordering operators. Ordering works on numbers, strings and dates.
//
// in and notIn test whether F1 is (is not) an element of F2: F2 is an
// array of literals and references, or a reference to an array in the
// input. notIn is false, like in, when F1 or an element reference has no
// value (of the Type), or F2 refers to no array.
//
// A func rule calls the function Func of service Service and allows when
// it answers {"ack": true}; a webhook rule POSTs to URL (https, or http to
// a loopback address) and allows when it answers with a 2xx status and
// {"ack": true}. Both send the call as {"service", "function", "params",
// "auth", "token"} (null where the call has none), both are bounded in
// time (5 seconds, or the call's deadline when sooner), and any failure
// (an error, a timeout, an answer that is not that JSON, a redirect)
// denies. A func rule calls through [WithCall] and the Rego built-in
// funcmesh.call (see [PolicyCallBuiltin]); a webhook through OPA's
// http.send.
//
// Error, on any rule, is the message a denial carries when this rule is
// why the call was denied: the outermost rule with an Error on the way to
// the clause that denied (the first failing clause of an and, the last of
// an or) gives its message, as in Space Cloud.
type Rule struct {
	Kind    string `json:"rule"`
	Eval    string `json:"eval,omitempty"`
	Type    string `json:"type,omitempty"`
	F1      any    `json:"f1,omitempty"`
	F2      any    `json:"f2,omitempty"`
	Clauses []Rule `json:"clauses,omitempty"`
	Service string `json:"service,omitempty"` // func
	Func    string `json:"func,omitempty"`    // func
	URL     string `json:"url,omitempty"`     // webhook
	Error   string `json:"error,omitempty"`
}

// The operand types of a match rule, the values of [Rule.Type].
const (
	TypeString = "string"
	TypeNumber = "number"
	TypeBool   = "bool"
	TypeDate   = "date"
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
// [*RuleError] per problem (at most 20), each naming its path. A service's
// config on its own ({"functions": …}) is refused with a pointer to
// [ParseServiceRules]: it does not say which service it is for.
func ParseRules(data []byte) (*RuleConfig, error) {
	p := &ruleParser{}
	doc, err := p.decode(data)
	if err != nil {
		return nil, err
	}
	if m, ok := doc.(map[string]any); ok {
		if _, ok := m["functions"]; ok {
			if _, ok := m["services"]; !ok {
				return nil, &RuleError{Path: "functions", Msg: "this is one service's config (Space Cloud's form); give it with ServiceRulesJSON(name, …) or as name.json in a RulesDir directory, or wrap it: {\"services\": {\"name\": …}}"}
			}
		}
	}
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
	p := &ruleParser{}
	doc, err := p.decode(data)
	if err != nil {
		return nil, fmt.Errorf("authz: rule config of service %q: %w", service, err)
	}
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

// decode reads one JSON value, numbers as json.Number.
func (p *ruleParser) decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, &RuleError{Msg: fmt.Sprintf("%v (at byte %d)", se, se.Offset)}
		}
		return nil, &RuleError{Msg: err.Error()}
	}
	if _, err := dec.Token(); err == nil {
		return nil, &RuleError{Msg: "trailing data after the JSON value"}
	}
	return doc, nil
}

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
		cfg.Services[name] = p.service(joinPath("services", name), services[name])
	}
	return cfg
}

// service reads one service's config, {"functions": …}, at path ("" for
// a config of its own).
func (p *ruleParser) service(path string, v any) ServiceRules {
	var svc ServiceRules
	sm := p.object(path, v, "functions")
	if sm == nil {
		return svc
	}
	fv, ok := sm["functions"]
	if !ok || fv == nil {
		return svc
	}
	fpath := joinPath(path, "functions")
	fns := p.object(fpath, fv)
	if fns == nil {
		return svc
	}
	svc.Functions = make(map[string]FunctionRules, len(fns))
	for _, fname := range slices.Sorted(maps.Keys(fns)) {
		path := joinPath(fpath, fname)
		fm := p.object(path, fns[fname], "rule")
		if fm == nil {
			continue
		}
		rv, ok := fm["rule"]
		if !ok {
			p.fail(path+".rule", "missing")
			continue
		}
		svc.Functions[fname] = FunctionRules{Rule: p.rule(path+".rule", rv, 0)}
	}
	return svc
}

func (p *ruleParser) rule(path string, v any, depth int) Rule {
	m := p.object(path, v, "rule", "eval", "type", "f1", "f2", "clauses", "service", "func", "url", "error")
	if m == nil {
		return Rule{}
	}
	var r Rule
	r.Kind = p.str(path+".rule", m["rule"])
	for _, f := range []struct {
		name string
		to   *string
	}{{"eval", &r.Eval}, {"type", &r.Type}, {"service", &r.Service}, {"func", &r.Func}, {"url", &r.URL}, {"error", &r.Error}} {
		if x, ok := m[f.name]; ok {
			*f.to = p.str(path+"."+f.name, x)
		}
	}
	r.F1, r.F2 = m["f1"], m["f2"]
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
// types, fields a rule's kind does not use, clauses missing on and/or,
// operands that are neither literals nor references, literals of the
// wrong type, ordering on bools, dates that are not RFC 3339, func rules
// without a valid service and function, webhook URLs that are neither
// https nor http to a loopback address, and nesting deeper than 32.
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
		svc := c.Services[name]
		validateService(v, path, &svc)
	}
	if len(v.errs) > 0 {
		return v.err()
	}
	return nil
}

func validateService(v *ruleParser, path string, s *ServiceRules) {
	for _, fname := range slices.Sorted(maps.Keys(s.Functions)) {
		fpath := joinPath(joinPath(path, "functions"), fname)
		if err := transport.ValidateName(fname); err != nil {
			v.fail(fpath, "%v", err)
		}
		r := s.Functions[fname].Rule
		validateRule(v, fpath+".rule", &r, 0)
	}
}

var evalOps = []string{"==", "!=", "<", "<=", ">", ">=", "in", "notIn"}

// maxErrorLen and maxURLLen bound a rule's error message and webhook URL.
const (
	maxErrorLen = 1024
	maxURLLen   = 2048
)

func validateRule(v *ruleParser, path string, r *Rule, depth int) {
	if depth > maxRuleDepth {
		v.fail(path, "nested more than %d deep", maxRuleDepth)
		return
	}
	// The fields each kind uses; the others must be unset.
	used := map[string][]string{
		KindAnd: {"clauses"}, KindOr: {"clauses"}, KindMatch: {"eval", "type", "f1", "f2"},
		KindFunc: {"service", "func"}, KindWebhook: {"url"},
	}[r.Kind]
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"eval", r.Eval != ""}, {"type", r.Type != ""}, {"f1", r.F1 != nil}, {"f2", r.F2 != nil},
		{"clauses", r.Clauses != nil}, {"service", r.Service != ""}, {"func", r.Func != ""}, {"url", r.URL != ""},
	} {
		if f.set && !slices.Contains(used, f.name) && r.Kind != "" && slices.Contains(strings.Split(ruleKinds, ", "), r.Kind) {
			v.fail(path+"."+f.name, "not used by a %q rule", r.Kind)
		}
	}
	if len(r.Error) > maxErrorLen {
		v.fail(path+".error", "longer than %d bytes", maxErrorLen)
	}
	switch r.Kind {
	case KindAllow, KindDeny, KindAuthenticated:
	case KindAnd, KindOr:
		if len(r.Clauses) == 0 {
			v.fail(path+".clauses", "a %q rule needs at least one clause", r.Kind)
		}
		for i := range r.Clauses {
			validateRule(v, fmt.Sprintf("%s.clauses[%d]", path, i), &r.Clauses[i], depth+1)
		}
	case KindMatch:
		if _, err := r.match(); err != nil {
			var re *RuleError
			if errors.As(err, &re) {
				v.fail(path+"."+re.Path, "%s", re.Msg)
			}
		}
	case KindFunc:
		for _, f := range []struct{ name, val string }{{"service", r.Service}, {"func", r.Func}} {
			switch err := transport.ValidateName(f.val); {
			case f.val == "":
				v.fail(path+"."+f.name, "missing; a func rule names the service and function to call")
			case err != nil:
				v.fail(path+"."+f.name, "%v", err)
			}
		}
	case KindWebhook:
		if err := checkWebhookURL(r.URL); err != nil {
			v.fail(path+".url", "%v", err)
		}
	case "":
		v.fail(path+".rule", "missing; want one of %s", ruleKinds)
	default:
		v.fail(path+".rule", "unknown rule kind %q; want one of %s", r.Kind, ruleKinds)
	}
}

// checkWebhookURL accepts https URLs, and http URLs to a loopback address
// (localhost, 127.0.0.0/8, ::1): a webhook receives the caller's claims
// and token, which must not cross a network in the clear.
func checkWebhookURL(s string) error {
	if s == "" {
		return errors.New("missing; a webhook rule names the URL to POST to")
	}
	if len(s) > maxURLLen {
		return fmt.Errorf("longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%.80q is not an absolute URL with a host", s)
	case u.User != nil:
		return errors.New("user info in the URL: send credentials another way")
	case u.Fragment != "":
		return errors.New("a fragment in the URL")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("http to %s: want https, or http to a loopback address", u.Hostname())
	}
	return fmt.Errorf("scheme %q: want https, or http to a loopback address", u.Scheme)
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// operand is a validated match operand: a reference (input path segments
// under root "auth", "params" or "token"), utils.exists of a reference, a
// literal, or a list of operands (F2 of in and notIn).
type operand struct {
	root   string   // "auth", "params" or "token" for a reference, "" for a literal
	path   []string // the keys under input.<root>
	lit    any      // string, json.Number or bool
	exists bool     // utils.exists(the reference)
	list   []operand
	isList bool
}

func (o operand) ref() bool { return o.root != "" && !o.exists }

func (o operand) typ() string {
	if o.exists {
		return TypeBool
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

// refs returns the references among the operands, list elements
// included.
func (m matchSpec) refs() []operand {
	var rs []operand
	for _, o := range append([]operand{m.f1, m.f2}, m.f2.list...) {
		if o.ref() {
			rs = append(rs, o)
		}
	}
	return rs
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
	case "", TypeString, TypeNumber, TypeBool, TypeDate:
	default:
		return m, &RuleError{Path: "type", Msg: fmt.Sprintf("unknown type %q; want string, number, bool or date", r.Type)}
	}
	member := m.op == "in" || m.op == "notIn"
	var err error
	if m.f1, err = parseOperand("f1", r.F1, false); err != nil {
		return m, err
	}
	if m.f2, err = parseOperand("f2", r.F2, member); err != nil {
		return m, err
	}
	if member && !m.f2.isList && !m.f2.ref() {
		return m, &RuleError{Path: "f2", Msg: fmt.Sprintf("%s needs an array, or a reference to one", m.op)}
	}
	if m.typ == "" {
		for _, o := range append([]operand{m.f1, m.f2}, m.f2.list...) {
			if t := o.typ(); t != "" {
				m.typ = t
				break
			}
		}
	}
	check := func(name string, o operand) error {
		t := o.typ()
		switch {
		case t == "" || t == m.typ:
			return nil
		case m.typ == TypeDate && t == TypeString:
			if _, ok := parseDate(o.lit.(string)); !ok {
				return &RuleError{Path: name, Msg: fmt.Sprintf("%.60q is not a date: want RFC 3339, 2006-01-02T15:04:05Z07:00 or 2006-01-02, in the years 1678 to 2261", o.lit)}
			}
			return nil
		case o.exists:
			return &RuleError{Path: name, Msg: "utils.exists(…) is a bool, compared as " + m.typ}
		}
		return &RuleError{Path: name, Msg: fmt.Sprintf("%s literal %v compared as %s", t, o.lit, m.typ)}
	}
	if err := check("f1", m.f1); err != nil {
		return m, err
	}
	if err := check("f2", m.f2); err != nil {
		return m, err
	}
	first := ""
	for i, o := range m.f2.list {
		t := o.typ()
		switch {
		case t == "":
			continue
		case first != "" && t != first:
			return m, &RuleError{Path: fmt.Sprintf("f2[%d]", i), Msg: fmt.Sprintf("%s in an array of %ss", t, first)}
		case first == "":
			first = t
		}
		if err := check("f2", o); err != nil {
			return m, err
		}
	}
	ordering := !member && m.op != "==" && m.op != "!="
	switch {
	case ordering && m.typ == "":
		return m, &RuleError{Path: "type", Msg: fmt.Sprintf("needed to compare two references with %s", m.op)}
	case ordering && m.typ == TypeBool:
		return m, &RuleError{Path: "eval", Msg: fmt.Sprintf("%s does not compare bools", m.op)}
	case member && m.typ == TypeDate:
		return m, &RuleError{Path: "eval", Msg: fmt.Sprintf("%s does not compare dates", m.op)}
	}
	return m, nil
}

// parseOperand reads f1 or f2: a reference string args.auth.<path>,
// args.params.<path> or args.token, utils.exists(<reference>), any other
// string, a number or a bool; with list, also an array of those (but
// utils.exists).
func parseOperand(name string, v any, list bool) (operand, error) {
	switch x := v.(type) {
	case nil:
		return operand{}, &RuleError{Path: name, Msg: "missing"}
	case string:
		if inner, ok := strings.CutPrefix(x, "utils.exists("); ok {
			inner, ok = strings.CutSuffix(inner, ")")
			o, err := parseRef(name, inner)
			if !ok || err != nil || o.root == "" {
				return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad %.60q: want utils.exists(args.auth.<path>), utils.exists(args.params.<path>) or utils.exists(args.token)", x)}
			}
			o.exists = true
			return o, nil
		}
		if strings.HasPrefix(x, "utils.") {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("unknown function in %.60q: only utils.exists(…) is known", x)}
		}
		return parseRef(name, x)
	case []any:
		if !list {
			return operand{}, &RuleError{Path: name, Msg: "an array literal may only be f2 of in or notIn"}
		}
		o := operand{isList: true, list: make([]operand, 0, len(x))}
		for i, e := range x {
			eo, err := parseOperand(fmt.Sprintf("%s[%d]", name, i), e, false)
			if err != nil {
				return operand{}, err
			}
			if eo.exists {
				return operand{}, &RuleError{Path: fmt.Sprintf("%s[%d]", name, i), Msg: "utils.exists(…) in a list"}
			}
			o.list = append(o.list, eo)
		}
		return o, nil
	case bool:
		return operand{lit: x}, nil
	case json.Number:
		if !numberOK(string(x)) {
			return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad number %.40q: want a JSON number of at most %d characters with an exponent within ±%d", string(x), maxNumberLen, maxNumberExponent)}
		}
		return operand{lit: x}, nil
	}
	// Numbers and lists written in Go rather than decoded from JSON.
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
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return operand{}, &RuleError{Path: name, Msg: "missing"}
		}
		elems := make([]any, rv.Len())
		for i := range elems {
			elems[i] = rv.Index(i).Interface()
		}
		return parseOperand(name, elems, list)
	}
	return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("want a string, a number or a bool, got %T", v)}
}

// parseRef reads a string operand: a reference, or else a literal.
func parseRef(name, x string) (operand, error) {
	rest, ok := strings.CutPrefix(x, "args.")
	if !ok {
		return operand{lit: x}, nil
	}
	if rest == "token" {
		return operand{root: "token"}, nil
	}
	root, path, _ := strings.Cut(rest, ".")
	if root != "auth" && root != "params" {
		return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad reference %q: want args.auth.<path>, args.params.<path> or args.token", x)}
	}
	if path == "" {
		return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad reference %q: no path after args.%s", x, root)}
	}
	keys := strings.Split(path, ".")
	if slices.Contains(keys, "") {
		return operand{}, &RuleError{Path: name, Msg: fmt.Sprintf("bad reference %q: empty key", x)}
	}
	return operand{root: root, path: keys}, nil
}
