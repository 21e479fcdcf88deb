// Package mesh is funcmesh's functions mesh: services made of plain Go
// functions ([Service]), a client that calls them from Go, also from
// inside a function ([Client]), the http.Handler that turns an HTTP
// request into a call ([Gateway]) and the discovery of running services
// ([Discovery]). Everything travels over NATS as package transport's wire
// contract says, so services written in other languages take part too.
//
// # Services
//
// A service instance is a NATS micro service named after the service,
// with one endpoint per function on prefix.service.function (prefix "fn"
// by default, [WithPrefix]) in the queue group "q": run several instances
// and NATS spreads the calls over them, and $SRV.PING/INFO/STATS and
// "nats micro ls" see every one. Register functions with
// [Service.Handle]: a [Handler], a [HandlerFunc], or a typed function
// adapted by [Func], which decodes the params from JSON (400 with the
// reason when they are malformed) and encodes the result as JSON.
//
//	svc, _ := mesh.NewService(nc, "payments", mesh.WithVersion("1.2.0"))
//	svc.Handle("charge", mesh.Func(func(ctx context.Context, in ChargeReq) (Receipt, error) { … }))
//	defer svc.Stop(ctx)
//
// A function gets a context that ends at the caller's deadline (the
// Mesh-Deadline header, or [WithTimeout]'s default when there is none) and
// the [*Call]: the params, the verified claims the gateway passed, the
// request ID, the calling function, the content type. The context carries
// the call ([CallFromContext]); a call made with it through any Client
// passes the claims, request ID, deadline and trace on and names the
// function as the caller ([Call.Client] is the service's own client). A
// request whose Mesh-* headers cannot be trusted (claims that are not a
// JSON object, a malformed deadline, caller or request ID) is answered 400
// without running the function; one whose deadline has already passed is
// answered 504.
//
// # Nested calls
//
// A call made with a function's context is a nested call: it goes out on
// the call route, callprefix.<calling service>.<service>.<function>
// ([WithCallPrefix], "call" by default), with its reply subject under the
// calling service's inbox, and a [Router] in a host process checks it and
// asks the policy ([AuthorizeFunc]; authz.Authorizer.AuthorizeCall) before
// forwarding it. The host runs one router per process on its own
// connection and gives it, and its gateway's Client, the same claims signer
// ([WithClaimsSigner]). Without a router, nested calls fail at once with
// 503. The Router's documentation says what it checks and why.
//
// # Concurrency
//
// micro delivers an endpoint's calls one after another on the
// subscription's goroutine, so the service hands each call to a goroutine
// of its own: a slow function never holds up a fast one. An instance runs
// at most [WithMaxConcurrency] calls at once ([DefaultMaxConcurrency],
// 100, over all its functions); a call above that is answered 429
// (transport.CodeResourceExhausted) at once, without running the
// function, and is not queued. Because such a refusal means the function
// did not run, a [Client] sends the call again, up to [WithMaxAttempts]
// attempts in all ([DefaultMaxAttempts], 5) and within the deadline. NATS
// delivers each attempt to an instance of the queue group picked at
// random, so a retry usually, not always, reaches another instance: with
// one busy instance out of two, 1 call in 16 that first hit the busy one
// still ends in 429. When every instance is busy the caller gets 429 after
// five quick refusals. Functions themselves should return 429 only for a
// call that had no effect, since clients retry it.
//
// # Errors
//
// A function's error becomes the reply: a [*transport.Error] anywhere in
// the chain answers with its code, status and message; the context's
// error once the deadline passed answers 504; any other error answers 500
// with the generic message "internal error". A panic answers 500 too and
// the instance keeps serving. The text of a plain error and a panic's
// value and stack never reach the caller: they go to [WithLogger] and
// [WithErrorHook].
//
// # Graceful stop
//
// [Service.Stop] stops taking calls by draining the endpoint subscriptions
// (micro's Stop): NATS sends new calls to other instances, while every
// call already delivered to this one still runs. Stop then waits for the
// calls in flight, bounded by its context, and leaves; if the context ends
// first it cancels the functions' contexts. With another instance running,
// no call is lost.
//
// # Calling
//
// The names keep the two directions apart: a [Call] is a call being
// served (what a function gets, [CallFromContext]); a [Client] invokes
// functions. [Client.Invoke] sends params and returns the result bytes; [InvokeJSON]
// encodes and decodes JSON; [Client.Do] also returns the result's content
// type. Errors are [*transport.Error]s: when no instance runs the answer
// is 503 at once (NATS no-responders), not after the timeout; the deadline
// passing is 504; a connection that is not connected fails at once with
// 503 instead of buffering the call to send it later.
//
// # Gateway
//
// [Gateway] is the http.Handler for POST /fn/{service}/{function}. Mount
// it behind the middleware that authenticates and authorizes callers; it
// reads the names from the route, validates them, reads the body within
// the broker's max payload and makes the call with the request's context.
// Headers the HTTP client sent never travel: the call carries only the
// contract's headers, built by the client from the context (the verified
// claims of reqctx.ClaimsJSON, the request ID of
// reqctx.RequestID). The call's deadline is the request context's, else
// the Client's timeout; a caller may shorten it, never extend it, with
// the Mesh-Timeout-Ms request header (transport.HeaderTimeoutMs, decimal
// milliseconds). It answers with the function's result
// and content type, or a JSON error body (transport.WriteHTTPError):
//
//	400  bad service or function name, params a typed function cannot decode, a bad Mesh-Timeout-Ms
//	404  the service runs but has no such function
//	405  a method other than POST (with Allow: POST); no call is made
//	413  body over the limit (middleware.BodyLimit, never above what NATS carries)
//	429  the gateway (Gateway.MaxInFlight) or every instance tried is at its concurrency limit
//	499  the HTTP client went away (nobody reads it)
//	500  the function failed without a code, or panicked
//	502  a malformed reply
//	503  no instance of the service runs, or the broker is not connected
//	504  the deadline passed (the gateway's or the caller's)
//	4xx/5xx  the function's own error status
//
// 401 and 403 come from the authentication and authorization middleware in
// front of it. To tell 404 from 503 when no instance answers, the gateway
// asks [Discovery.Running]; a successful call never costs a discovery
// round trip.
//
// # Discovery
//
// [Discovery.Services] lists the running services, their instances and
// functions from $SRV.INFO replies collected for a short window; a
// Discovery is also an http.Handler serving the listing as JSON, refreshed
// at most every few seconds, for hosts that want a GET /fn.
//
// # Tracing and metrics
//
// [WithTracerProvider] makes a Client start a client span "call svc.fn"
// per call and a Service a server span "serve svc.fn" whose parent is the
// caller's span, carried in the W3C traceparent/tracestate headers, so one
// trace covers HTTP → gateway → function → nested calls. Without a
// provider the trace context in a call's context still travels. [Metrics]
// is a prometheus.Collector of call counters by service, function and
// code, no-responders, timeouts, retries, panics and calls in flight;
// give it to clients and services with [WithMetrics].
//
// # What a call costs
//
// The gateway and client add no reflection or JSON to a call: the params
// pass through as bytes, read from the HTTP body once with no copy by
// the gateway (TestGatewayAddsNoBodyCopy checks it), and the result comes
// back the same way. A Service runs each call on a goroutine of its own and starts
// no other. The measured figures are in docs/performance.md.
//
// One connection carries a client's calls by default; nats.go reads all
// its replies on one goroutine and writes all its requests under one
// lock, so a host making many calls at once can spread them over several
// connections with [WithConns].
package mesh
