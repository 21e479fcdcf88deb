// Package tasks makes durable (async) calls: a call is stored in
// JetStream when it is enqueued and runs at least once afterwards, on an
// instance of the service, through the ordinary wire contract, so services
// in any language need no change. It survives restarts of the host, of the
// service and of the broker (file storage), and replicates with the
// stream on a NATS cluster.
//
// Everything durable is JetStream's:
//
//   - the stream FM_TASKS (work-queue retention) holds the calls waiting
//     to run, on subjects fmtask.<service>.<function>.<id>; one durable
//     pull consumer per function (fn_<service>_<function>_<hash>) shares
//     them out to every host that runs a [Dispatcher];
//   - retries are JetStream redeliveries: a failed attempt is
//     negatively acknowledged with a delay (exponential, with jitter), and
//     an attempt whose host died is redelivered after the consumer's
//     AckWait;
//   - [Call.IdempotencyKey] becomes the Nats-Msg-Id, so the stream's
//     de-duplication window drops a second enqueue of the same call;
//   - the key-value bucket FM_TASK_STATUS, whose TTL is the retention,
//     holds each task's status;
//   - the stream FM_TASKS_DEAD holds the dead letters: calls that failed
//     for good, with their last error, to be listed and replayed;
//   - a delayed call ([Call.At]) is a JetStream message schedule ("@at")
//     whose target is the task's subject: the server publishes the task
//     when it is due, with no timer of ours.
//
// # Identity
//
// An async call is authorized when it is enqueued: over HTTP the handler
// runs behind the same authentication and policy as the gateway; from Go,
// the caller decides. The caller's claims (from [reqctx.ClaimsJSON]) are
// stored with the call and signed with the host's [transport.ClaimsSigner],
// over the claims, the task's ID and a digest of everything else the
// message carries (service, function, params, settings), valid until the
// task expires. The dispatcher refuses a task whose signature does not
// hold, sending it to the dead letters with that reason, so a message
// altered in storage never runs with forged claims.
//
// # What a function sees
//
// Each attempt is an ordinary call with the stored claims and request ID,
// plus two headers: Mesh-Task-Id (the same on every attempt) and
// Mesh-Task-Attempt (1, 2, …). The function makes its effect idempotent by
// the task ID: a call runs once unless an attempt was interrupted, in
// which case it runs again with the same ID (and usually a higher attempt
// number; a broker killed before it stored a delivery count may repeat
// one). An attempt is interrupted when its host dies, or loses its broker
// connection after sending the call (the reply may be lost: the attempt
// ends, and the broker redelivers the task after [Options.AckWait]), or,
// on a cluster, when the consumer's leader is lost while the attempt runs
// and its lease runs out before the new leader hears from it. A task whose
// final status could not be stored runs again too (see Status). A delivery
// the host has taken but not yet started when its connection drops is
// dropped, neither run nor refused: after a broker restart the broker
// delivers it again, and only that delivery runs (TestBrokerRestart). A
// task that succeeded or failed is not run again by a later delivery of
// the same enqueue; [Tasks.Replay], or an enqueue with the same
// idempotency key after [Options.DedupWindow], runs the same ID anew.
//
// # Retries
//
// 5xx answers (503 when no instance runs, 504 at the timeout) and 429 are
// retried with backoff until [Retry.MaxAttempts]; any other 4xx is final
// at once. A task that fails for good is "failed" in its status and
// stored as a dead letter with its last error; [Tasks.Replay] enqueues it
// again under the same ID.
//
// # Status
//
// [Tasks.Status] and the HTTP [Tasks.StatusHandler] answer pending,
// running, succeeded (with the result, up to [Options.MaxResultBytes]) or
// failed (with the error and the attempts), for [Options.Retention] after
// the last change. A task reads running from the start of its attempt,
// except a first attempt the dispatcher knows to be the task's first
// delivery ever: that one reads running once it has run 50 ms, so that a
// quick task goes from pending to its result in one write. A task is
// acknowledged only once its final status is stored: while the status
// bucket cannot be written (a cluster electing its leader), attempts wait
// for it, up to two minutes each, and then leave the task to the broker,
// which delivers it again.
//
// Over HTTP a status is readable only by the caller that enqueued the
// task: the same "iss" and "sub" claims, or anyone holding the
// (unguessable, 128-bit) ID of a task enqueued anonymously.
package tasks
