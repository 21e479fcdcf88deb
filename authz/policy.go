package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// policy is one complete, compiled policy. It never changes once built;
// a reload builds a new one and swaps it in whole, so a request sees either
// the old policy or the new one, never a mix.
type policy struct {
	rules *rulesEval // the rule config; nil without one
	user  *evaluator // the Rego policy's query; nil without modules
	files []string   // the files on disk it was read from
}

// evaluator is one prepared query.
type evaluator struct {
	query    string
	full     rego.PreparedEvalQuery
	uses     inputUses
	compiler *ast.Compiler // the compiled modules, read-only
}

// compilePolicy compiles what the sources loaded.
func compilePolicy(ctx context.Context, l *loaded, query string) (*policy, error) {
	p := &policy{}
	if len(l.modules) > 0 {
		ref, err := parseQuery(query)
		if err != nil {
			return nil, err
		}
		if p.user, err = prepare(ctx, l.modules, l.data, ref); err != nil {
			return nil, err
		}
	}
	if l.rules != nil {
		var err error
		if p.rules, err = newRulesEval(l.rules); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// plan is how a call to one service.function is decided: what the
// policy reads of the input, and the rule config's residual (nil without a
// rule config).
type plan struct {
	uses inputUses
	rule *ruleEntry
}

func (p *policy) plan(service, function string) plan {
	var pl plan
	if p.user != nil {
		pl.uses = p.user.uses
	}
	if p.rules == nil {
		return pl
	}
	e := p.rules.entry(service, function)
	pl.uses, pl.rule = pl.uses.union(e.uses), e
	return pl
}

// parseQuery checks that a query is a reference into data by constant
// keys, like data.funcmesh.authz.
func parseQuery(q string) (ast.Ref, error) {
	ref, err := ast.ParseRef(q)
	if err != nil {
		return nil, fmt.Errorf("authz: query %q: %w", q, err)
	}
	if !ref[0].Equal(ast.DefaultRootDocument) || len(ref) < 2 {
		return nil, fmt.Errorf("authz: query %q: want a reference into data, like %s", q, DefaultQuery)
	}
	for _, t := range ref[1:] {
		if _, ok := t.Value.(ast.String); !ok {
			return nil, fmt.Errorf("authz: query %q: want constant keys, like %s", q, DefaultQuery)
		}
	}
	return ref, nil
}

// prepare compiles modules and data and prepares the query ref.
func prepare(ctx context.Context, modules map[string]*ast.Module, data map[string]any, ref ast.Ref) (*evaluator, error) {
	if data == nil {
		data = map[string]any{}
	}
	store, err := newStore(ctx, data)
	if err != nil {
		return nil, err
	}
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	defer store.Abort(ctx, txn)

	c := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(false)
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("authz: %w", c.Errors)
	}
	path, _ := ref.Ptr()
	_, err = store.Read(ctx, txn, storage.MustParsePath("/"+path))
	hasData := err == nil
	isRule := len(c.GetRulesForVirtualDocument(ref)) > 0
	isPackage := !isRule && len(c.GetRulesWithPrefix(ref)) > 0
	if !isRule && !isPackage && !hasData {
		return nil, fmt.Errorf("authz: query %s: no rule or data document defines it", ref)
	}
	allowRef := ref.Append(ast.StringTerm("allow"))
	if isPackage && !hasData && len(c.GetRulesWithPrefix(allowRef)) == 0 {
		return nil, fmt.Errorf("authz: query %s: the package has no allow rule, so it would deny every call", ref)
	}

	e := &evaluator{query: ref.String(), compiler: c}
	if isPackage && !hasData {
		// The decision is allow, status, reason and headers, each
		// evaluated: an error in any of them is an error, even when
		// allow is true. The package's other rules are helpers and are
		// evaluated only as those four need them.
		if c, err = withDecisionModule(modules, store, txn, ref); err != nil {
			return nil, err
		}
		e.compiler = c
		ref = decisionRef
	}
	if e.full, err = prepareRef(ctx, c, store, ref); err != nil {
		return nil, err
	}
	nodes := make([]any, 0, len(c.Modules))
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		nodes = append(nodes, c.Modules[name])
	}
	e.uses = usesOf(nodes...)
	return e, nil
}

// decisionPackage is the package of the module that gathers a package's
// decision; decisionRef is its rule.
const decisionPackage = "funcmesh_decision__"

var decisionRef = ast.MustParseRef("data." + decisionPackage + ".decision")

// withDecisionModule compiles modules again with a module whose rule
// decision is the object of pkg's allow, status, reason and headers, each
// key present when its rule is defined.
func withDecisionModule(modules map[string]*ast.Module, store storage.Store, txn storage.Transaction, pkg ast.Ref) (*ast.Compiler, error) {
	for name, m := range modules {
		if m.Package.Path.HasPrefix(decisionRef[:2]) {
			return nil, fmt.Errorf("authz: %s: package %s is reserved", name, decisionPackage)
		}
	}
	src := "package " + decisionPackage + "\n"
	for _, k := range []string{"allow", "status", "reason", "headers"} {
		src += fmt.Sprintf("decision[%q] := %s\n", k, pkg.Append(ast.StringTerm(k)))
	}
	m, err := ast.ParseModuleWithOpts(decisionPackage+".rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("authz: decision of %s: %w", pkg, err) // a bug
	}
	all := maps.Clone(modules)
	all[decisionPackage+".rego"] = m
	c := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(context.Background(), store, txn)).
		WithEnablePrintStatements(false)
	if c.Compile(all); c.Failed() {
		return nil, fmt.Errorf("authz: %w", c.Errors)
	}
	return c, nil
}

func prepareRef(ctx context.Context, c *ast.Compiler, store storage.Store, ref ast.Ref) (rego.PreparedEvalQuery, error) {
	pq, err := rego.New(
		rego.Compiler(c),
		rego.Store(store),
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return pq, fmt.Errorf("authz: query %s: %w", ref, err)
	}
	return pq, nil
}

// Evaluation options shared by every call: no metrics, and the value of
// the query handed back as the OPA term it is rather than converted to Go.
var (
	noMetrics    = rego.EvalMetrics(metrics.NoOp())
	keepAST      = rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })
	neverCancels = rego.EvalExternalCancel(topdown.NewCancel())
)

// errUndefined marks a query that has no value for the input.
var errUndefined = errors.New("authz: decision undefined")

// decide evaluates the query for input.
func (e *evaluator) decide(ctx context.Context, input ast.Value, log *slog.Logger) (Decision, error) {
	v, err := e.eval(ctx, e.full, input)
	switch {
	case errors.Is(err, errUndefined):
		return boolDecision(false), nil
	case err != nil:
		return Decision{}, fmt.Errorf("authz: %s: %w", e.query, err)
	}
	d, err := decisionOf(v, log)
	if err != nil {
		return Decision{}, fmt.Errorf("authz: %s: %w", e.query, err)
	}
	return d, nil
}

// eval evaluates pq for input and returns its value, errUndefined when it
// has none. It stops when ctx is done.
func (e *evaluator) eval(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (_ ast.Value, err error) {
	defer recoverEval(&err)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cancel := neverCancels
	if ctx.Done() != nil {
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		cancel = rego.EvalExternalCancel(c)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), noMetrics, keepAST, cancel)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	switch len(rs) {
	case 0:
		return nil, errUndefined
	case 1:
		if len(rs[0].Expressions) == 1 {
			if t, ok := rs[0].Expressions[0].Value.(*ast.Term); ok {
				return t.Value, nil
			}
		}
	}
	return nil, fmt.Errorf("authz: query %s: %d results", e.query, len(rs))
}

// recoverEval turns a panic inside OPA into an error, so that input OPA
// cannot handle denies the call rather than crashing the process.
func recoverEval(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("authz: evaluation panicked: %v", r)
	}
}

// newStore is inmem.NewFromObjectWithOpts returning rather than panicking
// on data OPA refuses (a number too big, say).
func newStore(ctx context.Context, data map[string]any) (storage.Store, error) {
	store := inmem.NewWithOpts(inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return nil, fmt.Errorf("authz: data: %w", err)
	}
	if err := store.Write(ctx, txn, storage.AddOp, storage.RootPath, data); err != nil {
		store.Abort(ctx, txn)
		return nil, fmt.Errorf("authz: data: %w", err)
	}
	if err := store.Commit(ctx, txn); err != nil {
		return nil, fmt.Errorf("authz: data: %w", err)
	}
	return store, nil
}
