package authz

import (
	"context"
	"fmt"
	"net/http"

	"github.com/open-policy-agent/opa/v1/ast"
)

// rulesEval decides calls under a rule config natively, in Go, with the
// meaning of the Rego module the config compiles to ([RuleConfig.Rego]):
// the same fallback chain, the same 401/403 denials, and the same value
// semantics, because the operands are OPA values compared with OPA's own
// comparison (what Rego's ==, != and < … >= call). The module is the
// specification; the tests and fuzzers (FuzzRules, FuzzRuleTrees) check,
// call by call, that the two decide alike. Deciding natively takes a
// fraction of a microsecond where an OPA evaluation, even of a partially
// evaluated residual, takes several.
//
// Everything is built at load: one entry per service and function of the
// config, its rule tree with constants folded (an "or" with an allow
// clause allows, an "and" with a deny clause denies), so that such trees
// read neither claims nor params.
type rulesEval struct {
	entries map[string]map[string]*ruleEntry // service → function → entry
}

// ruleEntry is one services.<s>.functions.<f> of the config, ready to
// decide.
type ruleEntry struct {
	root *ruleNode // folded; a constant root has kind allow or deny

	// needsAuth is set when the entry's rule (as written, before folding)
	// refers to the claims: an anonymous caller it denies gets 401.
	needsAuth bool

	uses inputUses // what root reads: auth and/or params
}

// noEntry decides a call no entry of the config applies to: denied, 403.
var noEntry = &ruleEntry{root: &ruleNode{kind: KindDeny}}

// ruleNode is a node of a rule tree.
type ruleNode struct {
	kind    string // one of the Kind constants
	clauses []*ruleNode
	match   *matchNode // for KindMatch
}

// matchNode is a validated match rule with its operands made OPA values.
type matchNode struct {
	op     string
	typ    string // "" when compared as whatever the values are
	f1, f2 ruleOperand
}

// ruleOperand is a match operand: a literal, or a reference to
// input.auth.<keys> or input.params.<keys>.
type ruleOperand struct {
	lit   ast.Value // the literal; nil for a reference
	root  string    // "auth" or "params" for a reference
	keys  []string
	terms []*ast.Term // keys as OPA strings, to look them up in OPA objects
}

func newRulesEval(cfg *RuleConfig) (*rulesEval, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &rulesEval{entries: make(map[string]map[string]*ruleEntry, len(cfg.Services))}
	for s, sr := range cfg.Services {
		if len(sr.Functions) == 0 {
			continue // no entry: the Rego's entries table has no row for it
		}
		fns := make(map[string]*ruleEntry, len(sr.Functions))
		for f, fr := range sr.Functions {
			e := &ruleEntry{root: compileRule(&fr.Rule), needsAuth: refersToAuth(&fr.Rule)}
			e.uses = e.root.uses()
			fns[f] = e
		}
		r.entries[s] = fns
	}
	return r, nil
}

// compileRule builds the node for a validated rule, folding constants.
func compileRule(r *Rule) *ruleNode {
	switch r.Kind {
	case KindAnd, KindOr:
		// The clause that decides alone: deny for and, allow for or.
		decisive, neutral := KindDeny, KindAllow
		if r.Kind == KindOr {
			decisive, neutral = KindAllow, KindDeny
		}
		n := &ruleNode{kind: r.Kind}
		for i := range r.Clauses {
			c := compileRule(&r.Clauses[i])
			switch c.kind {
			case decisive:
				return c
			case neutral:
				continue
			}
			n.clauses = append(n.clauses, c)
		}
		switch len(n.clauses) {
		case 0:
			return &ruleNode{kind: neutral}
		case 1:
			return n.clauses[0]
		}
		return n
	case KindMatch:
		m, _ := r.match() // validated
		return &ruleNode{kind: KindMatch, match: &matchNode{
			op: m.op, typ: m.typ, f1: compileOperand(m.f1), f2: compileOperand(m.f2),
		}}
	}
	return &ruleNode{kind: r.Kind}
}

func compileOperand(o operand) ruleOperand {
	if o.root == "" {
		var v ast.Value
		switch x := o.lit.(type) {
		case string:
			v = ast.String(x)
		case bool:
			v = ast.Boolean(x)
		default: // json.Number, within numberOK's bounds
			v = ast.MustInterfaceToValue(x)
		}
		return ruleOperand{lit: v}
	}
	op := ruleOperand{root: o.root, keys: o.path}
	for _, k := range o.path {
		op.terms = append(op.terms, ast.StringTerm(k))
	}
	return op
}

// uses reports what n reads of the input.
func (n *ruleNode) uses() inputUses {
	var u inputUses
	switch n.kind {
	case KindMatch:
		for _, o := range []ruleOperand{n.match.f1, n.match.f2} {
			if o.root != "" {
				u.add(append([]string{o.root}, o.keys...))
			}
		}
	case KindAuthenticated:
		u.add([]string{"auth"})
	}
	for _, c := range n.clauses {
		u = u.union(c.uses())
	}
	return u
}

// entry returns the entry for a call to service.function: the first of
// services.<s>.functions.<f>, services.<s>.functions.default,
// services.default.functions.<f> and services.default.functions.default
// the config has, or noEntry.
func (r *rulesEval) entry(service, function string) *ruleEntry {
	for _, s := range [2]string{service, DefaultName} {
		if fns := r.entries[s]; fns != nil {
			if e := fns[function]; e != nil {
				return e
			}
			if e := fns[DefaultName]; e != nil {
				return e
			}
		}
	}
	return noEntry
}

// decide decides the call in under e. params, when not nil, is
// input.params already decoded (by the middleware) and takes the place of
// in.Params.
func (r *rulesEval) decide(ctx context.Context, e *ruleEntry, in *Input, params ast.Value) (_ Decision, err error) {
	defer recoverEval(&err)
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	whole, paths := e.uses.below("params")
	c := ruleCall{in: in, params: params, tree: newReadTree(whole, paths)}
	ok, err := c.eval(e.root)
	switch {
	case err != nil:
		return Decision{}, err
	case ok:
		return Decision{Allow: true}, nil
	case in.Auth == nil && e.needsAuth:
		return Decision{Status: http.StatusUnauthorized, Reason: rulesAuthReason}, nil
	}
	return Decision{Status: http.StatusForbidden, Reason: rulesDenyReason}, nil
}

// ruleCall is one call being decided: the input, and its claims and params
// as OPA values once they are needed.
type ruleCall struct {
	in     *Input
	params ast.Value // nil until needed, unless the middleware decoded it
	tree   *readTree // what the rule reads of params
	auth   ast.Value // the claims converted whole; nil while not needed
	plain  int8      // whether in.Auth is plain JSON: 0 unknown, 1 yes, -1 no
}

func (c *ruleCall) eval(n *ruleNode) (bool, error) {
	switch n.kind {
	case KindAllow:
		return true, nil
	case KindDeny:
		return false, nil
	case KindAuthenticated:
		// input.auth is an object exactly when there are claims.
		return c.in.Auth != nil, nil
	case KindAnd:
		for _, cl := range n.clauses {
			if ok, err := c.eval(cl); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	case KindOr:
		for _, cl := range n.clauses {
			if ok, err := c.eval(cl); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	}
	return c.match(n.match)
}

// match evaluates a match rule the way its generated Rego does: each
// reference is type-checked (is_string, is_number, is_boolean) when the
// rule has a type, then the operands are compared; a reference with no
// value makes the rule false, whatever the operator.
func (c *ruleCall) match(m *matchNode) (bool, error) {
	a, ok, err := c.operand(m.f1, m.typ)
	if !ok || err != nil {
		return false, err
	}
	b, ok, err := c.operand(m.f2, m.typ)
	if !ok || err != nil {
		return false, err
	}
	switch m.op {
	case "==":
		return ast.ValueEqual(a, b), nil
	case "!=":
		return !ast.ValueEqual(a, b), nil
	case "<":
		return a.Compare(b) < 0, nil
	case "<=":
		return a.Compare(b) <= 0, nil
	case ">":
		return a.Compare(b) > 0, nil
	}
	return a.Compare(b) >= 0, nil // ">=", validated
}

// operand returns the value of o, false when a reference has none or its
// value is not of type typ.
func (c *ruleCall) operand(o ruleOperand, typ string) (ast.Value, bool, error) {
	if o.lit != nil {
		return o.lit, true, nil
	}
	var (
		v   ast.Value
		err error
	)
	if o.root == "auth" {
		v, err = c.authRef(o)
	} else {
		v, err = c.paramsRef(o)
	}
	if v == nil || err != nil {
		return nil, false, err
	}
	switch typ {
	case TypeString:
		_, ok := v.(ast.String)
		return v, ok, nil
	case TypeNumber:
		_, ok := v.(ast.Number)
		return v, ok, nil
	case TypeBool:
		_, ok := v.(ast.Boolean)
		return v, ok, nil
	}
	return v, true, nil
}

// authRef looks up input.auth.<keys>. Claims of plain JSON values (as a
// JSON decoder makes them) are walked as they are and only the value found
// is converted, as the lazy input object does; other claims are converted
// whole first, with the errors that conversion gives (see goValue).
func (c *ruleCall) authRef(o ruleOperand) (ast.Value, error) {
	claims := c.in.Auth
	if claims == nil {
		return nil, nil // input.auth is null
	}
	if c.plain == 0 {
		c.plain = -1
		if plainJSON(claims, 0) {
			c.plain = 1
		}
	}
	if c.plain < 0 {
		if c.auth == nil {
			v, err := goValue(claims, false)
			if err != nil {
				return nil, fmt.Errorf("authz: claims: %w", err)
			}
			c.auth = v
		}
		return lookup(c.auth, o.terms), nil
	}
	var x any = claims
	for _, k := range o.keys {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, nil
		}
		if x, ok = m[k]; !ok {
			return nil, nil
		}
	}
	return ast.InterfaceToValue(x)
}

// paramsRef looks up input.params.<keys>, decoding the params first if
// the middleware has not.
func (c *ruleCall) paramsRef(o ruleOperand) (ast.Value, error) {
	if c.params == nil {
		v, err := paramsValue(c.in.Params, c.tree, true)
		if err != nil {
			return nil, err
		}
		c.params = v
	}
	return lookup(c.params, o.terms), nil
}

// lookup returns v.<keys>, nil when it has no value: a key is missing or
// a value on the way is not an object.
func lookup(v ast.Value, keys []*ast.Term) ast.Value {
	for _, k := range keys {
		obj, ok := v.(ast.Object)
		if !ok {
			return nil
		}
		t := obj.Get(k)
		if t == nil {
			return nil
		}
		v = t.Value
	}
	return v
}
