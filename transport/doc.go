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
// header). The mesh sets these headers, and removes any copies a client sent
// ([IsReserved]):
//
//	Mesh-Auth        the caller's verified token claims as a JSON object
//	                 (absent for an anonymous caller)
//	Mesh-Deadline    the caller's deadline, Unix time in milliseconds
//	                 (decimal); a service must stop working on the call then
//	Mesh-Request-Id  the request ID, for logs
//	Mesh-Caller      "service.function" when a function makes the call
//	Mesh-Task-Id     on a durable (async) call: the task's ID, the same
//	                 on every attempt, to make the effect idempotent
//	Mesh-Task-Attempt  on a durable call: the attempt's number, from 1
//	traceparent      W3C trace context (and tracestate), when tracing
//	Content-Type     the media type of the params
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
