package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// How a stage decides fast, with OPA's own tools only:
//
//   - Per service and function, each rule of the decision (allow, status,
//     reason and headers of a package; the one rule a query names) is
//     partially evaluated with input.service and input.function known
//     and the rest of the input unknown. The residuals become one module
//     whose package is the decision, compiled and prepared once and kept
//     in a table for the policy's life (plan).
//   - A residual that reads no input and calls nothing non-deterministic
//     is evaluated once, when it is made: its decision is a constant.
//   - Otherwise the decision is cached, keyed by the values of exactly the
//     input paths the residual reads (found by walking it, see usesOf),
//     or by their types alone where only a type built-in tests them,
//     unless it calls a non-deterministic built-in, uses with, or reads
//     input whole. Data never changes without a reload, and a reload
//     builds a new policy with new tables and caches.
//
// Partial evaluation runs with strict built-in errors, so that a built-in
// that fails at that point fails the plan rather than vanishing from the
// residual; any failure to plan falls back to evaluating the whole
// decision, the reference every fast answer is checked against in the
// tests (see differential).

// stage is one query of a policy: the rule config's decision or the Rego
// policy's.
type stage struct {
	name     string        // for errors: the query
	compiler *ast.Compiler // the policy's modules, with the decision module
	store    storage.Store
	keys     []string  // the rules gathered: allow, status, … or "value"
	refs     []ast.Ref // their references
	pkg      bool      // the decision is an object of keys (a package query)
	full     rego.PreparedEvalQuery
	fullUses inputUses
	det      bool // the policy calls nothing non-deterministic
	partials []rego.PreparedPartialQuery
	noPlans  bool // partial evaluation is not to be trusted with it (see selfCompares)
	cache    decisionCache
	log      *slog.Logger // for the response headers a decision drops
}

// plan is how a stage decides calls to one service.function.
type plan struct {
	pq       rego.PreparedEvalQuery
	residual bool // pq's value is an object of the stage's keys; else the decision itself
	uses     inputUses
	constant bool // d, err is the decision of every call
	d        Decision
	err      error
	cache    bool      // decisions may be cached
	paths    []keyPath // the values a cache key is made of
}

// keyPath is one input path a plan reads: its value, or with typ only
// its type.
type keyPath struct {
	path []string
	typ  bool
}

// unknowns are the parts of the input partial evaluation leaves open.
var unknowns = []*ast.Term{
	ast.MustParseTerm("input.params"), ast.MustParseTerm("input.auth"),
	ast.MustParseTerm("input.caller"), ast.MustParseTerm("input.http"),
	ast.MustParseTerm("input.token"),
}

const (
	residualPackage = "funcmesh_residual__"
	partialPrefix   = "funcmesh_partial__"
)

var residualRef = ast.MustParseRef("data." + residualPackage)

// newStage prepares the decision ref of compiled modules c: a package
// (pkg) whose allow, status, reason and headers make the decision, or a
// rule or document whose value is the decision.
func newStage(ctx context.Context, name string, c *ast.Compiler, store storage.Store, ref ast.Ref, pkg bool) (*stage, error) {
	st := &stage{name: name, compiler: c, store: store, pkg: pkg}
	fullRef := ref
	if pkg {
		st.keys = []string{"allow", "status", "reason", "headers"}
		for _, k := range st.keys {
			st.refs = append(st.refs, ref.Append(ast.StringTerm(k)))
		}
		fullRef = decisionRef
	} else {
		st.keys = []string{"value"}
		st.refs = []ast.Ref{ref}
	}
	var err error
	if st.full, err = prepareRef(ctx, c, store, fullRef); err != nil {
		return nil, err
	}
	nodes := make([]any, 0, len(c.Modules))
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		nodes = append(nodes, c.Modules[name])
	}
	st.fullUses = usesOf(nodes...)
	st.det = deterministic(nodes...)
	st.noPlans = selfCompares(nodes...)
	for i, r := range st.refs {
		q := ast.NewBody(ast.Equality.Expr(ast.VarTerm("__d__"), ast.NewTerm(r)))
		pq, err := rego.New(
			rego.Compiler(c),
			rego.Store(store),
			rego.ParsedQuery(q),
			rego.StrictBuiltinErrors(true),
			rego.PartialNamespace(partialPrefix+st.keys[i]),
		).PrepareForPartial(ctx)
		if err != nil {
			return nil, fmt.Errorf("authz: query %s: %w", r, err)
		}
		st.partials = append(st.partials, pq)
	}
	return st, nil
}

// generic is the plan for any call: the whole decision, evaluated.
func (st *stage) generic() *plan {
	pl := &plan{pq: st.full, uses: st.fullUses}
	pl.setCache(st.det)
	return pl
}

// setCache decides whether pl's decisions may be cached, and on what.
func (pl *plan) setCache(det bool) {
	if !det || pl.uses.all || pl.uses.eager {
		return
	}
	pl.cache = true
	for _, p := range pl.uses.paths {
		pl.paths = append(pl.paths, keyPath{path: p})
	}
	for _, p := range pl.uses.types {
		pl.paths = append(pl.paths, keyPath{path: p, typ: true})
	}
}

// specialize makes the plan for calls to service.function, or returns an
// error when partial evaluation could not make one.
func (st *stage) specialize(ctx context.Context, service, function string) (_ *plan, err error) {
	defer recoverEval(&err)
	if st.noPlans {
		return nil, errors.New("no plans for this policy")
	}
	known := ast.NewObject(
		[2]*ast.Term{ast.StringTerm("service"), ast.StringTerm(service)},
		[2]*ast.Term{ast.StringTerm("function"), ast.StringTerm(function)})
	modules := map[string]*ast.Module{}
	var rules []string
	for i, pq := range st.partials {
		pqs, err := pq.Partial(ctx,
			rego.EvalParsedInput(known),
			rego.EvalParsedUnknowns(unknowns),
			rego.EvalPartialNamespace(partialPrefix+st.keys[i]),
			noMetrics)
		if err != nil {
			return nil, err
		}
		for j, m := range pqs.Support {
			modules[fmt.Sprintf("support_%s_%d.rego", st.keys[i], j)] = m
		}
		for _, q := range pqs.Queries {
			rules = append(rules, fmt.Sprintf("%s := __d__ if {\n%s\n}", st.keys[i], bodyString(q)))
		}
	}
	src := "package " + residualPackage + "\n\n" + strings.Join(rules, "\n\n") + "\n"
	m, err := ast.ParseModuleWithOpts("residual.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("residual: %w", err)
	}
	modules["residual.rego"] = m
	nodes := make([]any, 0, len(modules))
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		nodes = append(nodes, modules[name])
	}

	// A residual may refer to the policy's own rules rather than to
	// copies in the partial namespaces: it then needs the policy's
	// modules, and reads what they read.
	original := st.refersToRules(nodes)
	if original {
		for name, om := range st.compiler.Modules {
			modules["original/"+name] = om
		}
	}
	c := ast.NewCompiler().WithEnablePrintStatements(false)
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("residual: %w", c.Errors)
	}
	pl := &plan{residual: true}
	if pl.pq, err = prepareRef(ctx, c, st.store, residualRef); err != nil {
		return nil, err
	}
	pl.uses = usesOf(nodes...)
	det := deterministic(nodes...)
	if original {
		pl.uses = pl.uses.union(st.fullUses)
		det = det && st.det
	}
	if det && !pl.uses.all && !pl.uses.eager && len(pl.uses.paths) == 0 && len(pl.uses.types) == 0 {
		// Reads nothing of the input: one evaluation answers every call.
		v, err := evalContext(ctx, pl.pq, ast.NewObject())
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		pl.constant = true
		pl.d, pl.err = st.decision(pl, v, err)
		return pl, nil
	}
	pl.setCache(det)
	return pl, nil
}

// bodyString writes a residual query as rule body lines.
func bodyString(q ast.Body) string {
	var b strings.Builder
	for i, e := range q {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("\t")
		b.WriteString(e.String())
	}
	if len(q) == 0 {
		b.WriteString("\ttrue")
	}
	return b.String()
}

// refersToRules reports whether nodes refer to a rule of the policy
// (outside the partial namespaces and the residual's package).
func (st *stage) refersToRules(nodes []any) bool {
	found := false
	for _, n := range nodes {
		ast.WalkRefs(n, func(r ast.Ref) bool {
			if found || !r[0].Equal(ast.DefaultRootDocument) || len(r) < 2 {
				return found
			}
			if s, ok := r[1].Value.(ast.String); ok && (strings.HasPrefix(string(s), partialPrefix) || string(s) == residualPackage) {
				return false
			}
			prefix := r.GroundPrefix()
			if len(st.compiler.GetRules(prefix)) > 0 || len(st.compiler.GetRulesWithPrefix(prefix)) > 0 || len(prefix) < 2 {
				found = true
			}
			return found
		})
	}
	return found
}

// selfCompares reports whether nodes compare a term that is not constant
// with itself (input.auth.role == input.auth.role). OPA's partial
// evaluation unifies such a comparison away as true, though it is
// undefined, hence false, when the term is undefined (found by
// FuzzRuleTrees through the differential check): a policy that does this
// is decided by evaluating its whole decision.
func selfCompares(nodes ...any) bool {
	found := false
	vis := ast.NewGenericVisitor(func(x any) bool {
		e, ok := x.(*ast.Expr)
		if !ok || found || !e.IsCall() {
			return found
		}
		switch e.Operator().String() {
		case "eq", "equal", "neq", "lt", "lte", "gt", "gte", "assign":
		default:
			return false
		}
		ops := e.Operands()
		if len(ops) == 2 && !ast.IsConstant(ops[0].Value) && ops[0].Equal(ops[1]) {
			found = true
		}
		return found
	})
	for _, n := range nodes {
		vis.Walk(n)
	}
	return found
}

// deterministic reports whether nodes call only built-ins that OPA
// declares deterministic (not time.now_ns, http.send, rand.*,
// uuid.rfc4122, opa.runtime, io.jwt.decode_verify, …) and no built-in
// of the host's own: those may answer differently for the same input.
func deterministic(nodes ...any) bool {
	ok := true
	check := func(op ast.Ref) {
		name := op.String()
		if b, builtin := ast.BuiltinMap[name]; builtin {
			if b.IsNondeterministic() {
				ok = false
			}
			return
		}
		if !op[0].Equal(ast.DefaultRootDocument) {
			ok = false // not a Rego function, not a built-in OPA knows
		}
	}
	vis := ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if x.IsCall() {
				check(x.Operator())
			}
			for _, w := range x.With {
				_ = w
				ok = false // with may stand in for anything
			}
		case ast.Call:
			if r, isRef := x[0].Value.(ast.Ref); isRef {
				check(r)
			}
		}
		return !ok
	})
	for _, n := range nodes {
		vis.Walk(n)
	}
	return ok
}

// decision reads the decision from what a plan's query answered.
func (st *stage) decision(pl *plan, v ast.Value, err error) (Decision, error) {
	if pl.residual && errors.Is(err, errUndefined) {
		v, err = ast.NewObject(), nil // no rule of the residual holds
	}
	switch {
	case errors.Is(err, errUndefined):
		return boolDecision(false), nil
	case err != nil:
		return Decision{}, fmt.Errorf("authz: %s: %w", st.name, err)
	}
	if pl.residual && !st.pkg {
		obj, ok := v.(ast.Object)
		if !ok {
			return Decision{}, fmt.Errorf("authz: %s: residual of %s", st.name, ast.ValueName(v)) // a bug
		}
		t := obj.Get(ast.StringTerm("value"))
		if t == nil {
			return boolDecision(false), nil
		}
		v = t.Value
	}
	d, err := decisionOf(v, st.log)
	if err != nil {
		return Decision{}, fmt.Errorf("authz: %s: %w", st.name, err)
	}
	return d, nil
}

// decide decides in under pl. params is input.params as Go values (see
// Input.value).
func (st *stage) decide(ctx context.Context, pl *plan, in *Input, params any) (Decision, error) {
	if pl.constant {
		if err := ctx.Err(); err != nil {
			return Decision{}, err
		}
		d := pl.d
		d.Headers = cloneHeaders(d.Headers)
		return d, pl.err
	}
	var (
		h    uint64
		buf  [8]any
		vals []any
		keyd bool
	)
	if pl.cache {
		vals, keyd = in.keyValues(pl.paths, params, buf[:0])
		if keyd {
			h = mix(uint64(len(vals)), 0)
			for _, v := range vals {
				h = mix(h, hashValue(v))
			}
			if d, ok := st.cache.get(pl, h, vals); ok {
				if err := ctx.Err(); err != nil {
					return Decision{}, err
				}
				return d, nil
			}
		}
	}
	input, err := in.value(pl.uses, params)
	if err != nil {
		return Decision{}, err
	}
	v, err := evalContext(ctx, pl.pq, input)
	d, err := st.decision(pl, v, err)
	if err == nil && keyd {
		st.cache.put(pl, h, vals, d)
	}
	return d, err
}

// plans is a policy's table of plans per service and function: read
// without locks, grown by copying. It holds at most max names (maxPlans).
// When it is full it is emptied to make room, at most once per renew
// (planRenew); until then, calls to names it lacks are decided by the
// generic plans.
type plans struct {
	m        atomic.Pointer[map[[2]string]*callPlan]
	fullTill atomic.Int64 // UnixNano: full, and not to be emptied before

	mu      sync.Mutex
	emptied time.Time // when the table was made or last emptied
	max     int
	renew   time.Duration
}

// maxPlans bounds the service.function pairs a policy keeps plans for, so
// that callers naming ever new functions cannot make it grow.
const maxPlans = 1024

// planRenew bounds how often a full table of plans is emptied. Callers
// naming ever new functions fill it; emptying it lets the functions
// called since get plans again, while the partial evaluations such
// callers cause stay at maxPlans per planRenew.
const planRenew = time.Minute

// callPlan is how calls to one service.function are decided: a plan per
// stage, and what they read together. Its fields are set before ready is
// closed, and never change after.
type callPlan struct {
	ready  chan struct{}
	stages []*plan
	uses   inputUses
	params *readTree // what they read of params; nil when nothing
}

func newCallPlan(stages []*plan) *callPlan {
	cp := &callPlan{ready: make(chan struct{}), stages: stages}
	for _, pl := range stages {
		cp.uses = cp.uses.union(pl.uses)
	}
	if cp.uses.has("params") {
		cp.params = newReadTree(cp.uses.below("params"))
	}
	close(cp.ready)
	return cp
}

// plan returns the call plan for service.function, starting to make it
// on first use. A call waits for its function's plan (planBudget at
// most): what the plan reads decides whether the body is read at all, so
// a call decided by the generic plans instead would answer a body the
// policy never reads with 400 or 413, depending on how busy the machine
// is. Only a call whose context ends first gets the generic plans.
func (p *policy) plan(ctx context.Context, service, function string) *callPlan {
	key := [2]string{service, function}
	var cp *callPlan
	if m := p.plans.m.Load(); m != nil {
		cp = (*m)[key]
	}
	if cp == nil {
		if time.Now().UnixNano() < p.plans.fullTill.Load() {
			return p.generic
		}
		p.plans.mu.Lock()
		old := p.plans.m.Load()
		if old != nil {
			cp = (*old)[key]
		}
		if cp == nil {
			if old != nil && len(*old) >= p.plans.max {
				if next := p.plans.emptied.Add(p.plans.renew); time.Now().Before(next) {
					p.plans.fullTill.Store(next.UnixNano())
					p.plans.mu.Unlock()
					return p.generic
				}
				old = nil // emptied: the plans in use stay with their callers
				p.plans.emptied = time.Now()
			}
			m := make(map[[2]string]*callPlan, 1+lenOf(old))
			if old != nil {
				maps.Copy(m, *old)
			}
			cp = &callPlan{ready: make(chan struct{})}
			m[key] = cp
			p.plans.m.Store(&m)
			go p.specialize(cp, service, function)
		}
		p.plans.mu.Unlock()
	}
	select {
	case <-cp.ready:
		return cp
	default:
	}
	select {
	case <-cp.ready:
		return cp
	case <-ctx.Done():
		return p.generic
	}
}

func lenOf(m *map[[2]string]*callPlan) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// planBudget bounds the time partial evaluation may take for one
// service.function: a policy whose rules do seconds of work that does not
// depend on the input would do it at this point.
const planBudget = 5 * time.Second

// specialize fills cp with each stage's plan for service.function, or its
// generic plan where partial evaluation fails or takes longer than
// planBudget, and then closes cp.ready.
func (p *policy) specialize(cp *callPlan, service, function string) {
	ctx, cancel := context.WithTimeout(context.Background(), planBudget)
	defer cancel()
	stages := make([]*plan, len(p.stages))
	for i, st := range p.stages {
		pl, err := st.specialize(ctx, service, function)
		if err != nil {
			pl = p.generic.stages[i]
		}
		stages[i] = pl
	}
	filled := newCallPlan(stages)
	cp.stages, cp.uses, cp.params = stages, filled.uses, filled.params
	close(cp.ready)
}
