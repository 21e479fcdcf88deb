// Package authz authorizes every call with OPA before it reaches NATS.
// Policies are written in Rego (and tested with opa test), or kept as the
// JSON rule config Space Cloud users know, or both. OPA runs as a Go
// library: a policy is compiled and its query prepared once per load, and
// each decision only evaluates it.
//
//	policy, err := authz.New(ctx,
//		authz.Files("policy/"),
//		authz.WithWatch(true))
//	...
//	chain := alice.New(jwt, policy.Middleware)
//	mux.Handle("POST /fn/{service}/{function}", chain.Then(gateway))
//
// An [Authorizer] decides through its HTTP [Authorizer.Middleware] or
// through [Authorizer.Authorize], for code that calls functions itself.
//
// # The input document
//
// A policy sees each call as
//
//	{
//	  "service":  "payments",
//	  "function": "charge",
//	  "params":   {"amount": 5},
//	  "auth":     {"sub": "u1", "role": "admin"},
//	  "caller":   null,
//	  "http":     {"method": "POST", "path": "/fn/payments/charge", "headers": {"x-tenant": "t1"}}
//	}
//
// auth holds the caller's verified claims, null for an anonymous caller;
// caller is {"service", "function"} when a function makes the call, null
// otherwise; http is null outside an HTTP request, and its headers hold
// only the names given to [WithHeaders] (none by default; never
// Authorization or Cookie), keyed by lower-case name. params is the
// request body decoded as JSON, with numbers kept exactly as written.
// An object whose keys differ only in letter case ({"amount": 5,
// "AMOUNT": 5000}) is refused with 400: a Go function decoding it with
// encoding/json, which matches keys to fields regardless of case, could
// see another value than the one the policy checked.
//
// Only the parts of the document the policy refers to are built: the
// middleware reads and decodes the body only when the compiled policy
// refers to input.params (or to input as a whole), and a rule config's
// function whose rule does not look at params leaves the body alone.
// The whole body is checked (JSON syntax, nesting, number bounds, keys in
// two letter cases) without being built, and then only the parts the
// policy refers to are decoded: for a policy that reads
// input.params.amount and input.params.user, an object of those two keys,
// whatever else the body holds. A part the policy reads whole (a value
// passed to count or walk, a computed key) is decoded whole if that takes
// at most 32 times its size, and answered 413 otherwise; at most
// [WithMaxDecoding] calls are decoded and decided at once, and more are
// answered 429. So the memory that authorizing takes stays a small
// multiple of the bodies in flight, for callers who need not sign in.
//
// # Writing a Rego policy
//
// The policy answers at the query, data.funcmesh.authz unless [WithQuery]
// names another. When the query names a package, its rules allow, status,
// reason and headers make the decision:
//
//	package funcmesh.authz
//
//	default allow := false
//
//	# Admins may call anything.
//	allow if input.auth.role == "admin"
//
//	# Anyone signed in may charge up to 100.
//	allow if {
//		input.service == "payments"
//		input.function == "charge"
//		input.auth != null
//		input.params.amount <= 100
//	}
//
//	status := 401 if input.auth == null
//
//	reason := "only admins may do this" if not allow
//
// All four are evaluated for every decision, whatever allow says: an
// error in any of them (a status rule calling to_number("x"), two
// conflicting reasons) is an evaluation error, answered 500, even when
// allow is true. The package's other rules are evaluated only as those
// four need them.
//
// A query that names a rule may answer with a boolean, or with an object
// {"allow": bool, "status": int, "reason": string, "headers": {...}}.
// status is the HTTP status of a denial: a 4xx status is used as it is,
// anything else becomes 403. reason is shown to the caller as the error
// message. headers are set on the response, allowed or denied, but only
// WWW-Authenticate, Retry-After and X-* names (not X-Request-Id) with
// values free of control characters; others (Set-Cookie, hop-by-hop
// headers, Content-*, Mesh-*) are dropped and logged at debug level.
//
// Test a policy with opa test, keeping the tests next to it:
//
//	policy/
//	  authz.rego
//	  authz_test.rego   # package funcmesh.authz_test; test_… rules
//	  roles/data.json   # data.roles
//
//	$ opa test policy/
//
// [Files] and [FS] load a directory as opa does (data files are placed
// under data by their directory) but skip *_test.rego files and hidden
// files, so the tests never become part of the policy.
//
// # The rule config
//
// The rule config gives each function of each service a rule:
//
//	{"services": {
//	  "payments": {"functions": {
//	    "charge":  {"rule": {"rule": "authenticated"}},
//	    "refund":  {"rule": {"rule": "and", "clauses": [
//	      {"rule": "authenticated"},
//	      {"rule": "match", "eval": "==", "type": "string", "f1": "args.auth.role", "f2": "admin"}]}},
//	    "default": {"rule": {"rule": "deny"}}}},
//	  "default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}
//
// Rule kinds, Space Cloud's (see [Rule] for each in full): allow, deny,
// authenticated (the caller has claims), match (f1 eval f2, with eval
// one of == != < <= > >= in notIn, type string, number, bool or date,
// and operands that are literals, arrays for in, args.auth.<path>,
// args.params.<path>, args.token or utils.exists(<reference>)), and and
// or over clauses of any kind, nested; func (ask a function of the mesh,
// through [WithCall]) and webhook (ask a URL, through OPA's http.send),
// each allowing on {"ack": true}; and error on any rule, the message of a
// denial it causes. The rule for service s, function f is the first of
// services.s.functions.f, services.s.functions.default,
// services.default.functions.f and services.default.functions.default;
// with none, the call is denied. A denial answers 403, or 401 when the
// caller is anonymous and the rule refers to claims (authenticated,
// args.auth or args.token), since signing in might help.
//
// A service's config may also come on its own, in the form Space Cloud
// wrote it ({"functions": …}): [ServiceRulesJSON], or a directory of
// <service>.json files, [RulesDir].
//
// Where the kinds mean something else than in Space Cloud (from its
// source, v0.12 for func and v0.21 for the others):
//
//   - func sends {"service", "function", "params", "auth", "token"} and the
//     caller's claims; Space Cloud sent {"params"} and the claims. Both
//     allow on {"ack": true} only and wait at most 5 seconds. Space Cloud
//     called without a guard; here the function runs with Mesh-Caller
//     authz.policy ([PolicyCaller]), which no service can claim, and the
//     nested calls it makes carry a mark the host signed into the call,
//     under which the policy calls no function: it cannot make the policy
//     ask it again, in any host process ([WithCall]).
//   - webhook needs {"ack": true} with a 2xx status (Space Cloud took any
//     JSON with a 2xx), https or loopback http, follows no redirect, and
//     has a 5 second bound (Space Cloud's later versions had none of
//     their own); an answer longer than [MaxHTTPAnswer] denies, unread
//     past the bound (which holds for every http.send of a policy).
//   - in and notIn are false when f1 (or a reference in the list) has no
//     value of the type, or f2 is no array; Space Cloud's notIn allowed
//     when a reference to the list held no array. They compare any type
//     but date; Space Cloud's compared strings and numbers.
//   - date takes RFC 3339 date-times and 2006-01-02, as Space Cloud did,
//     between the years 1678 and 2261 (OPA's nanosecond time); a string
//     that is no such date makes the match false, where Space Cloud
//     failed the rule, which also denied.
//   - utils.exists(x) is true when x has a value, null included, as in
//     Space Cloud; references go through objects only, where Space Cloud
//     also indexed arrays (args.params.list.0).
//   - error is the message of the outermost rule with one on the way to
//     the clause that denied (the first failing clause of an and, the
//     last of an or), as Space Cloud's chain of formatError gave it.
//
// Space Cloud's query, force, remove, encrypt, decrypt and hash rules
// (database and response rules), and webhook's claims, requestTemplate
// and store, are refused at load as unknown.
//
// [ParseRules] and [RuleConfig.Validate] reject a config with anything
// unknown or wrong, each error naming its place:
//
//	authz: rule config: services.payments.functions.charge.rule.clauses[1].eval: unknown operator "=~"
//
// The config's meaning is a Rego module, package funcmesh.rules, one rule
// per node of each rule tree: [RuleConfig.Rego] returns it (save it to
// read it or to opa test it). OPA decides the config by evaluating that
// module, as it decides any policy: there is one engine. Given both a
// rule config and Rego modules, both must allow: the rules decide first,
// and a call they allow goes on to the Rego policy, whose decision then
// stands.
//
// # Fail closed
//
// Nothing but an explicit allow lets a call through. A decision that is
// undefined, an allow that is not true, or a rule config with no rule for
// the function denies (403). An evaluation error (strict built-in errors
// are on, so to_number("x") inside a rule is an error, not an undefined
// rule), a decision of the wrong shape (an allow that is not a boolean, a
// status that is not a number), a panic inside OPA, or an Authorizer with
// no policy answers 500 with a generic message; the error itself goes
// only to the logger ([WithLogger]) and the decision hook
// ([WithDecisionHook]). A done context stops an evaluation under way. [New]
// refuses a policy set that is empty ([ErrNoPolicy]), does not compile, or
// whose query names nothing.
//
// # Hot reload
//
// With [WithWatch], the files of [Files] and [RulesFile] are watched; a
// change is loaded, compiled and prepared in full, then swapped in with
// one atomic store, so a request sees the old policy or the new one, never
// part of each. A change that fails keeps the policy in use and is
// reported to [WithReloadHook] and the logger. So does a change after
// which a file the policy was read from is missing (deleted, renamed, or
// between the steps of an editor's save): a policy without its data could
// allow more than meant, so the old one stays until the file is back
// ([ErrIncomplete]). [Authorizer.Reload] reloads on demand (on SIGHUP,
// say, or for an [FS]) and takes the files as they are, removals included.
//
// # Cost
//
// Every decision is OPA's, made fast with OPA's own tools. On the first
// call to a service.function, each rule of the decision is partially
// evaluated with the service and function known, and the residual is
// compiled and prepared once, for the policy's life; a residual that
// reads nothing of the input is evaluated then, and its decision answers
// every later call. Otherwise decisions are cached, keyed by the values
// of exactly the input paths the residual reads (input.auth.role and
// input.params.user, say: not the whole claims and body), and checked
// value by value on a hit; a path the residual only tests the type of
// (is_object(input.auth), how the rule config asks whether the caller
// signed in) is keyed by its type. Nothing is cached for a policy that calls a
// non-deterministic built-in (time.now_ns, http.send, rand.intn,
// uuid.rfc4122, io.jwt.decode_verify, opa.runtime, …) or a built-in OPA
// does not know, uses with, or reads input whole; data changes only with
// a reload, and a reload starts from empty plans and caches. A call
// waits for its function's plan while it is made (at most 5 s, or until
// its context ends); plans are kept for 1024 service.function pairs, a
// table emptied when full at most once a minute; calls to names beyond
// it meanwhile, and calls whose planning failed or took longer than 5 s,
// are decided by evaluating the whole decision (cached the same way).
// The package's tests check every decision they make against plain
// evaluation of the whole policy. See
// BenchmarkDecision and docs/performance.md for the figures.
package authz
