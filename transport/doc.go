// Package transport is funcmesh's wire contract: what travels over NATS
// between a caller (the gateway or another function) and a service, written
// down so that a service in any language can implement it without reading
// funcmesh's code.
//
// # Wire contract v1
//
// Subjects. A function is reached at the subject
//
//	<prefix>.<service>.<function>
//
// where prefix is "fn" unless the deployment configures another one
// ([DefaultPrefix]). Service and function names match
// ^[A-Za-z0-9_-]{1,64}$ ([ValidateName]): no '.', '*', '>', whitespace,
// control or non-ASCII characters, so a name can never change the shape of
// the subject.
//
// Services. Every instance of a service is a NATS "micro" service named
// <service>, with one endpoint per function on the subject above, all in
// the queue group "q" ([QueueGroup]). NATS spreads calls over the instances
// through that queue group, and the standard $SRV.PING, $SRV.INFO and
// $SRV.STATS discovery subjects (and "nats micro ls") see every instance.
//
// Request. The body is the params, passed through unchanged (JSON by
// convention; the caller's Content-Type is carried in the Content-Type
// header). The mesh sets these headers; a gateway forwards none that an
// HTTP client sent, so none can be forged:
//
//	Mesh-Auth        the caller's verified token claims as a JSON object
//	                 (absent for an anonymous caller)
//	Mesh-Deadline    the caller's deadline, Unix time in milliseconds
//	                 (decimal); a service must stop working on the call then
//	Mesh-Request-Id  the request ID, for logs
//	Mesh-Auth-Sig    the host's signature of Mesh-Auth, bound to the
//	                 request ID and Mesh-Deadline (see [ClaimsSigner]);
//	                 a service passes it on and cannot check it. On a
//	                 call the policy made, and the calls made within it,
//	                 it also carries that mark, with or without Mesh-Auth
//	Mesh-Caller      "service.function" when a function makes the call;
//	                 "authz.policy" ([PolicyCaller]) when the host's policy
//	                 does
//	Mesh-Hops        how many nested calls led to this one (absent: 0)
//	Mesh-Task-Id     on a durable (async) call: the task's ID, the same
//	                 on every attempt, to make the effect idempotent
//	Mesh-Task-Attempt  on a durable call: the attempt's number, from 1
//	traceparent      W3C trace context (and tracestate), when tracing
//	Content-Type     the media type of the params
//
// Nested calls. A function of service A calls B.f by sending a request to
//
//	<callprefix>.A.B.f
//
// (callprefix is "call" unless configured, [DefaultCallPrefix],
// [CallSubject]) with a reply subject under A's own inbox,
// _INBOX_A.<anything> ([InboxPrefix]: with per-service credentials the
// only inbox A may subscribe to, and the only one the router answers to;
// in nats.js set inboxPrefix). The body is the params. Headers: pass on,
// unchanged, Mesh-Auth, Mesh-Auth-Sig (also when there is no Mesh-Auth),
// Mesh-Request-Id, Mesh-Deadline and Mesh-Hops of the call being served, and traceparent/tracestate; set
// Mesh-Caller to "A.<calling function>"; optionally Mesh-Timeout-Ms
// ([HeaderTimeoutMs]) for a shorter deadline than the one passed on;
// Content-Type as for any call. Only the host's routers take requests on
// the call route: a router checks the signature (claims without a valid
// one, or a signature without claims that does not hold: 401; signed for
// a deadline that has passed: 504), the caller (Mesh-Caller naming
// another service: 400; naming [PolicyCaller]: 403), the hop count (508
// past the limit, [CodeLoopDetected]), asks the policy (its denial: 403
// or the policy's status; for a call made within a policy call, known by
// its signature's mark, the policy calls no function), then forwards the
// call to
// <prefix>.B.f and relays B's reply to A's reply subject as B sent it. No
// instance of B is an error reply with 503; no router at all is the NATS
// "no responders" status (503). A request whose reply subject is not
// under A's inbox gets no answer at all.
//
// Reply. A successful reply's body is the result, passed through unchanged,
// with an optional Content-Type header (application/json when absent). An
// error reply carries two headers, as NATS micro does:
//
//	Nats-Service-Error       a message safe to show to the caller
//	Nats-Service-Error-Code  an HTTP status number from 400 to 599
//
// and its body is ignored. A reply whose Nats-Service-Error-Code is missing,
// not a number or outside 400-599 while Nats-Service-Error is present is a
// malformed reply (502, [CodeBadReply]).
//
// Statuses. [Code] is the closed set of error codes; [Code.HTTPStatus] and
// [CodeForStatus] map them to and from HTTP statuses, and the table in the
// README lists when each is used. A status a service sends that is not in
// the table (say 418) keeps its number on the way to the HTTP caller and
// takes the code of its class (4xx: invalid_argument, 5xx: internal).
//
// Capacity. A service that is at its concurrency limit answers 429 at once
// without running the function; such a call may be retried on another
// instance.
package transport
