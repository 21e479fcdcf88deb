// Package spacecloud lets Space Cloud frontends call funcmesh functions
// unchanged. [Handler] serves Space Cloud's function call API, the one its
// JavaScript client space-api's api.call(service, func, params, timeout)
// speaks:
//
//	POST /v1/api/{project}/services/{service}/{function}     (Space Cloud v0.16+)
//	POST /v1/api/{project}/functions/{service}/{function}    (before)
//	Authorization: Bearer <token>
//	{"params": {...}, "timeout": <seconds>}
//
// answered {"result": ...} with 200, or {"error": "message"} with the
// status of what went wrong.
//
// # Where it sits in the chain
//
// The Handler goes in front of the chain that serves the native route, so
// a call through it passes the same authentication, the same policy and
// the same gateway; there is no second call path:
//
//	native := alice.New(middleware.RequestID, cors, middleware.JWT(verifier),
//		policy.Middleware).Then(gateway)
//	mux.Handle("/fn/{service}/{function}", native)
//	sc := &spacecloud.Handler{Next: native, Project: "todo-app"}
//	mux.Handle(spacecloud.Pattern, sc)
//	mux.Handle(spacecloud.LegacyPattern, sc)
//
// A Space Cloud request meets the Handler first. It checks the method and
// the project, reads the envelope (at most the limit of a
// middleware.BodyLimit in front of it, reqctx.MaxBodyBytes; 413 above),
// and gives Next the native request: the params alone as the body, the timeout as the
// Mesh-Timeout-Ms header, everything else (the Authorization header that
// space-api sends as "Bearer <token>", the path, the other headers) as it
// came. So the JWT middleware verifies the token as on the native route,
// the policy sees input.params as the function will get them (and
// input.http.path as /v1/api/...), and the gateway makes the call with
// the timeout bounded by its own maximum. What Next answers, the Handler
// turns into Space Cloud's shape: a result becomes {"result": ...} (JSON
// as it is; another media type as a JSON string), an error body keeps its
// status and gives its message as {"error": "..."}. Middleware that should
// see the answer as the client gets it (an access log, metrics) goes in
// front of the Handler; middleware inside Next sees the native call.
//
// # What Space Cloud users notice
//
// Answers use real statuses, as on the native route: 401 when the token
// is invalid or the policy needs a signed-in caller (Space Cloud answered
// 403 for every authorization failure), 403 when the policy denies, the
// function's own 4xx/5xx status, 404 for a function the service does not
// have, 503 at once when no instance runs, 504 when the deadline passes
// (Space Cloud up to v0.18 answered 500 for any failed call), 400 for an envelope that
// is not a JSON object or a timeout that is not a number of 0 or more
// seconds (Space Cloud ignored an envelope it could not decode). An
// error's message is the caller-safe one; a function's internal error
// text never reaches the caller.
//
// The timeout is read in seconds, as Space Cloud's server read it, although
// space-api's documentation speaks of milliseconds and its call sends 5000
// when given none; such a value is bounded by the gateway's maximum, which
// then applies, as the server's own limit did. From v0.19 Space Cloud
// answered a remote service's result without the {"result"} wrapper; this
// Handler answers as v0.11 to v0.18 and every space-api version document.
package spacecloud
