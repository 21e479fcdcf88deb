package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// policy is one complete, compiled policy. It never changes once built
// (but for the plans and caches it fills as calls come); a reload builds a
// new one and swaps it in whole, so a request sees either the old policy
// or the new one, never a mix.
type policy struct {
	// stages decide in order: the rule config's, then the Rego policy's.
	// A call must be allowed by each; the first denial stands.
	stages  []*stage
	plans   plans
	generic *callPlan // for names beyond the plans table
	files   []string  // the files on disk it was read from
}

// compilePolicy compiles what the sources loaded.
func compilePolicy(ctx context.Context, l *loaded, query string, log *slog.Logger) (*policy, error) {
	p := &policy{}
	p.plans.emptied, p.plans.max, p.plans.renew = time.Now(), maxPlans, planRenew
	if l.rules != nil {
		src, err := l.rules.Rego()
		if err != nil {
			return nil, err
		}
		m, err := ast.ParseModuleWithOpts(rulesFile, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("authz: the rule config's Rego does not parse: %w", err) // a bug
		}
		st, err := prepare(ctx, map[string]*ast.Module{rulesFile: m}, nil, ast.MustParseRef(RulesQuery))
		if err != nil {
			return nil, fmt.Errorf("authz: the rule config's Rego: %w", err) // a bug
		}
		st.name = "rule config"
		p.stages = append(p.stages, st)
	}
	if len(l.modules) > 0 {
		ref, err := parseQuery(query)
		if err != nil {
			return nil, err
		}
		st, err := prepare(ctx, l.modules, l.data, ref)
		if err != nil {
			return nil, err
		}
		p.stages = append(p.stages, st)
	}
	for _, st := range p.stages {
		st.log = log
	}
	generic := make([]*plan, len(p.stages))
	for i, st := range p.stages {
		generic[i] = st.generic()
	}
	p.generic = newCallPlan(generic)
	return p, nil
}

// rulesFile is the name of the rule config's module in errors.
const rulesFile = "rules.json.rego"

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

// prepare compiles modules and data and prepares the stage deciding at
// ref.
func prepare(ctx context.Context, modules map[string]*ast.Module, data map[string]any, ref ast.Ref) (*stage, error) {
	if data == nil {
		data = map[string]any{}
	}
	for name, m := range modules {
		if reserved(m.Package.Path) {
			return nil, fmt.Errorf("authz: %s: package %s: names of the form funcmesh_…__ are reserved", name, m.Package.Path)
		}
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
	pkg := isPackage && !hasData
	if pkg {
		// The decision is allow, status, reason and headers, each
		// evaluated: an error in any of them is an error, even when
		// allow is true. The package's other rules are helpers and are
		// evaluated only as those four need them.
		if c, err = withDecisionModule(modules, store, txn, ref); err != nil {
			return nil, err
		}
	}
	return newStage(ctx, ref.String(), c, store, ref, pkg)
}

// reserved reports whether a package path is one of authz's own: its
// first name has the form funcmesh_…__.
func reserved(path ast.Ref) bool {
	if len(path) < 2 {
		return false
	}
	s, ok := path[1].Value.(ast.String)
	return ok && strings.HasPrefix(string(s), "funcmesh_") && strings.HasSuffix(string(s), "__")
}

// decisionPackage is the package of the module that gathers a package's
// decision; decisionRef is its rule.
const decisionPackage = "funcmesh_decision__"

var decisionRef = ast.MustParseRef("data." + decisionPackage + ".decision")

// withDecisionModule compiles modules again with a module whose rule
// decision is the object of pkg's allow, status, reason and headers, each
// key present when its rule is defined.
func withDecisionModule(modules map[string]*ast.Module, store storage.Store, txn storage.Transaction, pkg ast.Ref) (*ast.Compiler, error) {
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

// clock, when set (by the tests), is the time evaluations see in
// time.now_ns; nil is the time now.
var clock atomic.Pointer[func() time.Time]

// errUndefined marks a query that has no value for the input.
var errUndefined = errors.New("authz: decision undefined")

// evalContext evaluates pq for input and returns its value, errUndefined
// when it has none. It stops when ctx is done.
func evalContext(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (_ ast.Value, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		return evalQuery(ctx, pq, input, neverCancels)
	}
	c := topdown.NewCancel()
	stop := context.AfterFunc(ctx, c.Cancel)
	defer stop()
	v, err := evalQuery(ctx, pq, input, rego.EvalExternalCancel(c))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
	}
	return v, err
}

// evalQuery evaluates pq for input, turning a panic into an error.
func evalQuery(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value, opts ...rego.EvalOption) (_ ast.Value, err error) {
	defer recoverEval(&err)
	opts = append(opts, rego.EvalParsedInput(input), noMetrics, keepAST, boundedHTTP)
	if now := clock.Load(); now != nil {
		opts = append(opts, rego.EvalTime((*now)()))
	}
	rs, err := pq.Eval(ctx, opts...)
	if err != nil {
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
	return nil, fmt.Errorf("%d results", len(rs))
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
