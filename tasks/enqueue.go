package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// MaxIdempotencyKeyLen bounds [Call.IdempotencyKey].
const MaxIdempotencyKeyLen = 256

// Call is one durable call for [Tasks.Enqueue].
type Call struct {
	Service  string
	Function string
	// Params are passed to the function unchanged; JSON by convention.
	Params []byte
	// ContentType is the media type of Params; empty means JSON.
	ContentType string

	// IdempotencyKey, when set, makes a second Enqueue of the same key by
	// the same caller (the same claims "iss" and "sub") for the same
	// function, within [Options.DedupWindow], return the first task
	// instead of storing another. At most MaxIdempotencyKeyLen bytes.
	IdempotencyKey string

	// At, when set and in the future, runs the call at that time (to the
	// second) instead of now: a JetStream "@at" message schedule.
	At time.Time

	// Retry overrides the function's settings for this call (zero fields
	// keep them); an event trigger sets its own.
	Retry Retry

	// Header holds headers passed on to the function with every attempt,
	// such as CloudEvents' ce-* attributes. Names starting with Mesh-,
	// Nats- or Fm-, and Content-Type, are refused.
	Header nats.Header
}

// Receipt is the answer of [Tasks.Enqueue].
type Receipt struct {
	// ID names the task: the same on every attempt, the key of its status.
	ID string
	// Duplicate is true when the idempotency key matched a task enqueued
	// before; ID is that task's.
	Duplicate bool
	// At is when the task is due: now, or Call.At.
	At time.Time
}

// Enqueue stores c and returns once JetStream has it (on a cluster, once
// a majority of the replicas does). The call runs with the claims and
// request ID of ctx ([reqctx.ClaimsJSON], [reqctx.RequestID]): authorize it
// before. Errors are *transport.Error: invalid_argument for a bad call,
// unavailable when JetStream cannot store it, or did not confirm it in
// time (ctx's deadline, else JetStream's default of 5 s): then the call
// may be stored all the same, and only an Enqueue with the same
// [Call.IdempotencyKey] is sure to store it once.
func (t *Tasks) Enqueue(ctx context.Context, c Call) (Receipt, error) {
	if err := transport.ValidateName(c.Service); err != nil {
		return Receipt{}, transport.WrapError(transport.CodeInvalidArgument, "invalid service name", err)
	}
	if err := transport.ValidateName(c.Function); err != nil {
		return Receipt{}, transport.WrapError(transport.CodeInvalidArgument, "invalid function name", err)
	}
	if len(c.IdempotencyKey) > MaxIdempotencyKeyLen {
		return Receipt{}, transport.Errorf(transport.CodeInvalidArgument, "idempotency key longer than %d bytes", MaxIdempotencyKeyLen)
	}
	if len(c.ContentType) > 256 {
		return Receipt{}, transport.NewError(transport.CodeInvalidArgument, "Content-Type too long")
	}
	for k := range c.Header {
		if !extraHeader(k) {
			return Receipt{}, transport.Errorf(transport.CodeInvalidArgument, "header %q cannot be passed on with a task", k)
		}
	}
	now := time.Now()
	tk := &task{
		service:     c.Service,
		function:    c.Function,
		params:      c.Params,
		contentType: c.ContentType,
		retry:       c.Retry.or(t.retry(c.Service, c.Function)),
		enqueued:    time.UnixMilli(now.UnixMilli()),
		extra:       c.Header,
	}
	if raw, ok := reqctx.ClaimsJSON(ctx); ok {
		tk.claims = string(raw)
	}
	if len(tk.claims) > transport.MaxClaimsLen {
		return Receipt{}, transport.NewError(transport.CodeInvalidArgument, "claims too large")
	}
	if c.IdempotencyKey != "" {
		tk.id = keyID(owner(tk.claims), c.Service, c.Function, c.IdempotencyKey)
	} else {
		tk.id = newID()
	}
	if id, ok := reqctx.RequestID(ctx); ok {
		tk.requestID = id
	} else {
		tk.requestID = tk.id
	}
	due := now
	delayed := c.At.After(now.Add(time.Second))
	if delayed {
		due = c.At.Truncate(time.Second)
	}
	tk.expires = time.UnixMilli(due.Add(t.opts.Retention).UnixMilli())
	tk.sign(t.opts.Signer)

	if err := t.ensureConsumer(ctx, c.Service, c.Function); err != nil {
		return Receipt{}, err
	}
	msg := &nats.Msg{Subject: tk.subject(), Header: tk.header(), Data: tk.params}
	if delayed {
		msg.Subject = schedPrefix + tk.id
		msg.Header.Set("Nats-Schedule", "@at "+due.UTC().Format(time.RFC3339))
		msg.Header.Set("Nats-Schedule-Target", tk.subject())
		// Kept until it is due and a retention after, whatever MaxAge.
		msg.Header.Set("Nats-TTL", (time.Until(due) + t.opts.Retention).Truncate(time.Second).String())
	}
	// No expected-stream check: JetStream lets no other stream take the
	// subjects of FM_TASKS.
	ack, err := t.js.PublishMsg(ctx, msg, jetstream.WithMsgID(tk.id))
	if err != nil {
		return Receipt{}, storeError(err)
	}
	return Receipt{ID: tk.id, Duplicate: ack.Duplicate, At: due}, nil
}

// storeError maps a JetStream failure to the mesh's error.
func storeError(err error) error {
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return transport.WrapError(transport.CodeTooLarge, "params too large for the broker", err)
	case errors.Is(err, context.Canceled):
		return transport.WrapError(transport.CodeCanceled, transport.DefaultMessage(transport.CodeCanceled), err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return transport.WrapError(transport.CodeUnavailable, "JetStream did not confirm the task in time: it may be stored all the same (enqueue it again with the same idempotency key to have it once)", err)
	}
	return transport.WrapError(transport.CodeUnavailable, "the task could not be stored", err)
}

// consumerName is the durable consumer of one function's tasks: readable,
// with a digest so that no two functions share it.
func consumerName(service, function string) string {
	sum := sha256.Sum256([]byte(service + "." + function))
	return "fn_" + service + "_" + function + "_" + hex.EncodeToString(sum[:4])
}

// ensureConsumer makes the consumer of service.function, once per process;
// dispatchers learn of it from JetStream's advisory.
func (t *Tasks) ensureConsumer(ctx context.Context, service, function string) error {
	fn := [2]string{service, function}
	if _, ok := t.consumers.Load(fn); ok {
		return nil
	}
	if _, err := t.makeConsumer(ctx, service, function); err != nil {
		return transport.WrapError(transport.CodeUnavailable, "the task queue could not be prepared", err)
	}
	t.consumers.Store(fn, struct{}{})
	return nil
}

// makeConsumer creates (or updates) the consumer of service.function.
func (t *Tasks) makeConsumer(ctx context.Context, service, function string) (jetstream.Consumer, error) {
	return t.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       consumerName(service, function),
		Description:   "funcmesh tasks of " + service + "." + function,
		FilterSubject: taskPrefix + service + "." + function + ".*",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.opts.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
		Replicas:      0,
	})
}

// functionOf reads service.function back from a consumer's filter.
func functionOf(filter string) (string, string, bool) {
	rest, ok := strings.CutPrefix(filter, taskPrefix)
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, ".*")
	if !ok {
		return "", "", false
	}
	svc, fn, err := splitKey(rest)
	return svc, fn, err == nil
}

// ScheduledCall is the call a periodic schedule (package schedules) makes
// at each tick.
type ScheduledCall struct {
	Call
	// Claims are the identity the ticks run as (Mesh-Auth JSON; empty:
	// anonymous).
	Claims string
	// Name is the schedule's; Overlap is "allow" or "skip".
	Name, Overlap string
	// SignedTo is when the signature of the claims expires.
	SignedTo time.Time
}

// ScheduleMessage returns the message of a periodic schedule: a signed
// task that JetStream republishes at each tick (the caller adds the
// subject and the Nats-Schedule header). It is for package schedules.
func (t *Tasks) ScheduleMessage(ctx context.Context, sc ScheduledCall) (*nats.Msg, error) {
	if err := errors.Join(transport.ValidateName(sc.Service), transport.ValidateName(sc.Function), transport.ValidateName(sc.Name)); err != nil {
		return nil, transport.WrapError(transport.CodeInvalidArgument, "invalid name", err)
	}
	if err := t.ensureConsumer(ctx, sc.Service, sc.Function); err != nil {
		return nil, err
	}
	tk := &task{
		id:          newID(),
		service:     sc.Service,
		function:    sc.Function,
		params:      sc.Params,
		contentType: sc.ContentType,
		claims:      sc.Claims,
		requestID:   "schedule-" + sc.Name,
		retry:       sc.Retry.or(t.retry(sc.Service, sc.Function)),
		enqueued:    time.UnixMilli(time.Now().UnixMilli()),
		expires:     time.UnixMilli(sc.SignedTo.UnixMilli()),
		schedule:    sc.Name,
		overlap:     sc.Overlap,
	}
	tk.sign(t.opts.Signer)
	h := tk.header()
	h.Set("Nats-Schedule-Target", tk.subject())
	h.Set("Nats-TTL", "never")
	return &nats.Msg{Header: h, Data: tk.params}, nil
}

// LastTick returns the status of the last tick of the schedule name, nil
// if none is known.
func (t *Tasks) LastTick(ctx context.Context, name string) *Status {
	e, err := t.status.Get(ctx, "schedule_"+name)
	if err != nil {
		return nil
	}
	st, err := t.Status(ctx, string(e.Value()))
	if err != nil {
		return nil
	}
	return st
}
