package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// rulesEval evaluates the Rego a rule config compiles to, cheaply.
//
// The generated module is evaluated whole (full) only to answer a denial
// with its status and reason. Whether a call is allowed comes from the
// module partially evaluated for the call's service and function: OPA
// resolves the fallback chain and inlines the rule tree, leaving a few
// expressions over input.auth and input.params (often none: allow and
// deny become constants). These residuals are made once per service and
// function and kept.
//
// The generated Rego compares input.service and input.function with the
// names in the config only, so every name the config does not mention
// behaves alike: such names share one residual, made for the name "",
// which no config can mention. The cache thus holds at most
// (services+1)×(functions+1) entries however many names callers send.
type rulesEval struct {
	full      *evaluator
	compiler  *ast.Compiler
	store     storage.Store
	services  map[string]bool
	functions map[string]bool
	entries   sync.Map // [2]string (canonical service, function) → *ruleEntry
}

// ruleEntry is the residual of the allow rule for one service and
// function: allowed when one of queries succeeds.
type ruleEntry struct {
	constant bool // the answer does not depend on the input ...
	allow    bool // ... and is this
	queries  []ast.Body
	compiler *ast.Compiler
	uses     inputUses
	flat     bool // the queries call no rules: only input and built-ins
}

func newRulesEval(ctx context.Context, cfg *RuleConfig) (*rulesEval, error) {
	src, err := cfg.Rego()
	if err != nil {
		return nil, err
	}
	m, err := ast.ParseModuleWithOpts(rulesFile, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("authz: generated Rego does not parse: %w", err) // a bug
	}
	full, err := prepare(ctx, map[string]*ast.Module{rulesFile: m}, nil, ast.MustParseRef(RulesQuery))
	if err != nil {
		return nil, fmt.Errorf("authz: generated Rego: %w", err) // a bug
	}
	r := &rulesEval{
		full:      full,
		compiler:  full.compiler,
		store:     inmem.New(),
		services:  map[string]bool{},
		functions: map[string]bool{},
	}
	for s, sr := range cfg.Services {
		r.services[s] = true
		for f := range sr.Functions {
			r.functions[f] = true
		}
	}
	return r, nil
}

const rulesFile = "funcmesh.rules.rego"

var (
	rulesAllowQuery = ast.MustParseBody("data." + RulesPackage + ".allow")
	rulesUnknowns   = []string{"input.auth", "input.params", "input.caller", "input.http"}
)

// entry returns the residual for a call to service.function, making it
// on first use.
func (r *rulesEval) entry(ctx context.Context, service, function string) (*ruleEntry, error) {
	if !r.services[service] {
		service = ""
	}
	if !r.functions[function] {
		function = ""
	}
	key := [2]string{service, function}
	if e, ok := r.entries.Load(key); ok {
		return e.(*ruleEntry), nil
	}
	e, err := r.partial(ctx, service, function)
	if err != nil {
		return nil, err
	}
	actual, _ := r.entries.LoadOrStore(key, e)
	return actual.(*ruleEntry), nil
}

func (r *rulesEval) partial(ctx context.Context, service, function string) (_ *ruleEntry, err error) {
	defer recoverEval(&err)
	known := ast.NewObject(
		[2]*ast.Term{ast.StringTerm("service"), ast.StringTerm(service)},
		[2]*ast.Term{ast.StringTerm("function"), ast.StringTerm(function)})
	pqs, err := rego.New(
		rego.ParsedQuery(rulesAllowQuery),
		rego.Compiler(r.compiler),
		rego.Store(r.store),
		rego.ParsedInput(known),
		rego.Unknowns(rulesUnknowns),
		rego.StrictBuiltinErrors(true),
	).Partial(ctx)
	if err != nil {
		return nil, fmt.Errorf("authz: partial evaluation of the rule config: %w", err)
	}
	e := &ruleEntry{}
	for _, q := range pqs.Queries {
		if len(q) == 0 {
			e.constant, e.allow = true, true
			return e, nil
		}
	}
	if len(pqs.Queries) == 0 {
		e.constant = true
		return e, nil
	}
	modules := make(map[string]*ast.Module, len(pqs.Support))
	nodes := make([]any, 0, len(pqs.Queries)+len(pqs.Support))
	for i, m := range pqs.Support {
		modules[fmt.Sprintf("support%d.rego", i)] = m
		nodes = append(nodes, m)
	}
	e.compiler = ast.NewCompiler()
	if e.compiler.Compile(modules); e.compiler.Failed() {
		return nil, fmt.Errorf("authz: residual of the rule config: %w", e.compiler.Errors)
	}
	for _, q := range pqs.Queries {
		cq, err := e.compiler.QueryCompiler().Compile(q)
		if err != nil {
			return nil, fmt.Errorf("authz: residual of the rule config: %w", err)
		}
		e.queries = append(e.queries, cq)
		nodes = append(nodes, cq)
	}
	e.uses = usesOf(nodes...)
	e.flat = len(pqs.Support) == 0 && !refersToData(e.queries)
	return e, nil
}

// refersToData reports whether any of the queries reads data (a rule or a
// document).
func refersToData(queries []ast.Body) bool {
	found := false
	for _, q := range queries {
		ast.WalkRefs(q, func(r ast.Ref) bool {
			if r[0].Equal(ast.DefaultRootDocument) {
				found = true
			}
			return found
		})
	}
	return found
}

// noVirtualCache and noBaseCache stand in for topdown's per-query caches
// when a residual has nothing to cache, to save their allocation.
type (
	noVirtualCache struct{}
	noBaseCache    struct{}
)

func (noVirtualCache) Push()                         {}
func (noVirtualCache) Pop()                          {}
func (noVirtualCache) Get(ast.Ref) (*ast.Term, bool) { return nil, false }
func (noVirtualCache) Put(ast.Ref, *ast.Term)        {}
func (noVirtualCache) Keys() []ast.Ref               { return nil }
func (noBaseCache) Get(ast.Ref) ast.Value            { return nil }
func (noBaseCache) Put(ast.Ref, ast.Value)           {}

var noMetricsTD = metrics.NoOp()

// errFound stops a residual query at its first result.
var errFound = errors.New("found")

// allowed evaluates the residual for input.
func (r *rulesEval) allowed(ctx context.Context, e *ruleEntry, input *ast.Term) (_ bool, err error) {
	defer recoverEval(&err)
	if err := ctx.Err(); err != nil {
		return false, err
	}
	txn, err := r.store.NewTransaction(ctx)
	if err != nil {
		return false, err
	}
	defer r.store.Abort(ctx, txn)
	for _, q := range e.queries {
		tq := topdown.NewQuery(q).
			WithCompiler(e.compiler).
			WithStore(r.store).
			WithTransaction(txn).
			WithInput(input).
			WithStrictBuiltinErrors(true).
			WithMetrics(noMetricsTD)
		if e.flat {
			// No rules to cache the values of, no data to read.
			tq = tq.WithVirtualCache(noVirtualCache{}).WithBaseCache(noBaseCache{})
		}
		err := tq.Iter(ctx, func(topdown.QueryResult) error { return errFound })
		switch {
		case err == errFound:
			return true, nil
		case err != nil:
			return false, err
		}
	}
	return false, nil
}

// denial evaluates the whole generated module for a call the residual
// denied, for the status and reason of its decision.
func (r *rulesEval) denial(ctx context.Context, in *Input, params ast.Value, log *slog.Logger) (Decision, error) {
	input, err := in.value(r.full.uses, params)
	if err != nil {
		return Decision{}, err
	}
	d, err := r.full.decide(ctx, input, log)
	if err != nil {
		return Decision{}, fmt.Errorf("authz: rule config: %w", err)
	}
	if d.Allow {
		// The residual and the module disagree: a bug, and a denial.
		return Decision{}, errors.New("authz: rule config: partial and full evaluation disagree")
	}
	return d, nil
}
