// Package events emits events and runs triggers: an event of a type, with
// a payload, is stored in JetStream and fans out to every trigger whose
// types match; each trigger calls its function through a durable call of
// package tasks, with that trigger's own retries, timeout and dead
// letters.
//
// An event is a message in the stream FM_EVENTS on the subject
// fmevent.<type>, carried in the binary mode of the CloudEvents 1.0 NATS
// binding: the data is the message body, the attributes are the headers
// ce-specversion ("1.0"), ce-id, ce-source, ce-type and ce-time, and the
// data's media type is Content-Type; so other CloudEvents tools read the
// stream. The emitter's claims travel with the event signed by the host
// (see transport.ClaimsSigner), over the claims, the ID and a digest of the
// attributes and data, like a task's; an event whose signature does not
// hold fires no trigger.
//
// Each trigger is a durable JetStream consumer (tr_<name>) of the types it
// names, shared by every host: an event reaches each trigger at least once,
// independently of the others. The trigger turns it into a task whose
// idempotency key is the event ID and the trigger's name, so a redelivered
// event makes no second task (within the tasks' de-duplication window). The
// function gets the event's data as its params, the emitter's claims, and
// the ce-* headers.
//
// A trigger created while events flow sees the events emitted after it was
// created, not the earlier ones (its consumer starts at new messages); a
// trigger that already exists resumes where it stopped, so nothing emitted
// while no host ran is missed. A trigger removed from the configuration
// has its consumer deleted when the next host starts. A consumer deleted
// while the triggers run (by hand) is made again by the hosts that run
// them, starting after the last event the host finished, at most a
// minute back: events stored meanwhile fire, and those fired again fall
// in the de-duplication window.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// StreamName is the stream of events.
const StreamName = "FM_EVENTS"

const (
	eventPrefix = "fmevent."
	schedPrefix = "fmevsched."

	hClaims  = "Fm-Claims"
	hSig     = "Fm-Claims-Sig"
	hExpires = "Fm-Expires"
	hRequest = "Fm-Request-Id"
)

// CloudEvents attribute headers (binary mode of the NATS binding).
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderTime        = "ce-time"
)

// Trigger maps event types to a function.
type Trigger struct {
	// Name names the trigger (and its consumer); a valid name
	// (transport.ValidateName), unique among the triggers.
	Name string
	// Types are the event types that fire it; "*" is every type.
	Types []string
	// Service and Function are called with each event.
	Service, Function string
	// Retry sets the trigger's attempts, timeout and backoff; zero fields
	// take the function's settings in package tasks.
	Retry tasks.Retry
}

// Options configure [New].
type Options struct {
	// Signer signs the emitter's claims; required: the host's signer.
	Signer *transport.ClaimsSigner
	// Triggers are the triggers this host runs; every host should list
	// the same.
	Triggers []Trigger
	// Source is the ce-source of emitted events; default "funcmesh".
	Source string
	// Replicas, Memory and Retention are as in tasks.Options: copies on a
	// cluster (default 1), memory storage for tests, and how long events
	// are kept (default 24h).
	Replicas  int
	Memory    bool
	Retention time.Duration
	// Logger receives the triggers' failures (nil: silent).
	Logger *slog.Logger
}

// Events emits events and runs the triggers.
type Events struct {
	q      *tasks.Tasks
	js     jetstream.JetStream
	stream jetstream.Stream
	opts   Options
	log    *slog.Logger

	mu           sync.Mutex
	run          context.Context // the triggers' work; ends after Stop
	stop         context.CancelFunc
	halt         context.Context // ends when Stop begins
	stopRemaking context.CancelFunc
	wg           sync.WaitGroup
	contexts     map[string]jetstream.ConsumeContext // by trigger
	remaking     map[string]bool                     // triggers whose consumer is being made again
	done         map[string]*progress                // by trigger
}

// New creates (or updates) the events stream and the triggers' consumers,
// deleting the consumers of triggers no longer listed.
func New(ctx context.Context, q *tasks.Tasks, opts Options) (*Events, error) {
	if q == nil {
		return nil, errors.New("events: New: nil Tasks")
	}
	if opts.Signer == nil {
		return nil, errors.New("events: New: Options.Signer is required")
	}
	if opts.Source == "" {
		opts.Source = "funcmesh"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Retention <= 0 {
		opts.Retention = tasks.DefaultRetention
	}
	seen := map[string]bool{}
	for i, tr := range opts.Triggers {
		if err := tr.validate(); err != nil {
			return nil, fmt.Errorf("events: trigger %d: %w", i, err)
		}
		if seen[tr.Name] {
			return nil, fmt.Errorf("events: trigger %q listed twice", tr.Name)
		}
		seen[tr.Name] = true
	}
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	e := &Events{q: q, js: q.JetStream(), opts: opts, log: opts.Logger}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	var err error
	e.stream, err = e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "funcmesh events",
		Subjects:          []string{eventPrefix + "*", schedPrefix + "*"},
		Storage:           storage,
		Replicas:          opts.Replicas,
		MaxAge:            opts.Retention,
		Duplicates:        min(tasks.DefaultDedupWindow, opts.Retention),
		AllowMsgSchedules: true,
		AllowRollup:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("events: stream %s: %w", StreamName, err)
	}
	for _, tr := range opts.Triggers {
		if _, err := e.stream.CreateOrUpdateConsumer(ctx, tr.consumerConfig()); err != nil {
			return nil, fmt.Errorf("events: trigger %q: %w", tr.Name, err)
		}
	}
	names := e.stream.ConsumerNames(ctx)
	for name := range names.Name() {
		if t, ok := strings.CutPrefix(name, "tr_"); ok && !seen[t] {
			if err := e.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil, fmt.Errorf("events: removing trigger %q: %w", t, err)
			}
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("events: listing triggers: %w", err)
	}
	return e, nil
}

func (tr *Trigger) validate() error {
	if err := transport.ValidateName(tr.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(tr.Types) == 0 {
		return fmt.Errorf("trigger %q: no types", tr.Name)
	}
	for _, ty := range tr.Types {
		if ty != "*" {
			if err := transport.ValidateName(ty); err != nil {
				return fmt.Errorf("trigger %q: type: %w", tr.Name, err)
			}
		}
	}
	if err := errors.Join(transport.ValidateName(tr.Service), transport.ValidateName(tr.Function)); err != nil {
		return fmt.Errorf("trigger %q: %w", tr.Name, err)
	}
	if tr.Retry.MaxAttempts < 0 || tr.Retry.Timeout < 0 || tr.Retry.Backoff < 0 || tr.Retry.MaxBackoff < 0 {
		return fmt.Errorf("trigger %q: negative retry setting", tr.Name)
	}
	return nil
}

func (tr *Trigger) consumerConfig() jetstream.ConsumerConfig {
	var filters []string
	for _, ty := range tr.Types {
		if ty == "*" {
			filters = []string{eventPrefix + "*"}
			break
		}
		filters = append(filters, eventPrefix+ty)
	}
	slices.Sort(filters)
	filters = slices.Compact(filters)
	cfg := jetstream.ConsumerConfig{
		Durable:       "tr_" + tr.Name,
		Description:   "funcmesh trigger " + tr.Name + " -> " + tr.Service + "." + tr.Function,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	return cfg
}

// Event is one event for [Events.Emit].
type Event struct {
	// Type is the event type (ce-type), a valid name such as "signup".
	Type string
	// Data is the payload, passed to each trigger's function as its
	// params; JSON by convention.
	Data []byte
	// ContentType is the media type of Data; empty means JSON.
	ContentType string
	// ID is the event's ID (ce-id); empty makes one. Emitting the same ID
	// twice within the de-duplication window stores it once.
	ID string
	// At, when in the future, delays the event to that time (to the
	// second): a JetStream "@at" message schedule.
	At time.Time
}

// MaxIDLen bounds [Event.ID].
const MaxIDLen = 128

// Emit stores ev and returns its ID once JetStream has it. The event
// carries the claims and request ID of ctx: authorize the emitter before
// (over HTTP, [Handler] runs behind the policy). Errors are
// *transport.Error.
func (e *Events) Emit(ctx context.Context, ev Event) (string, error) {
	if err := transport.ValidateName(ev.Type); err != nil {
		return "", transport.WrapError(transport.CodeInvalidArgument, "invalid event type", err)
	}
	if ev.ID == "" {
		ev.ID = nuid.Next()
	}
	if !validID(ev.ID) {
		return "", transport.Errorf(transport.CodeInvalidArgument, "invalid event ID: want 1 to %d characters of A-Z a-z 0-9 - _ . : + / =", MaxIDLen)
	}
	if len(ev.ContentType) > 256 {
		return "", transport.NewError(transport.CodeInvalidArgument, "Content-Type too long")
	}
	now := time.Now()
	when := now
	delayed := ev.At.After(now.Add(time.Second))
	if delayed {
		when = ev.At.Truncate(time.Second)
	}
	h := nats.Header{}
	h.Set(HeaderSpecVersion, "1.0")
	h.Set(HeaderID, ev.ID)
	h.Set(HeaderSource, e.opts.Source)
	h.Set(HeaderType, ev.Type)
	h.Set(HeaderTime, when.UTC().Format(time.RFC3339Nano))
	if ev.ContentType != "" {
		h.Set("Content-Type", ev.ContentType)
	}
	var claims string
	if raw, ok := reqctx.ClaimsJSON(ctx); ok {
		claims = string(raw)
	}
	reqID, ok := reqctx.RequestID(ctx)
	if !ok {
		reqID = ev.ID
	}
	expires := time.UnixMilli(when.Add(e.opts.Retention).UnixMilli())
	if claims != "" {
		h.Set(hClaims, claims)
	}
	h.Set(hRequest, reqID)
	h.Set(hExpires, strconv.FormatInt(expires.UnixMilli(), 10))
	h.Set(hSig, e.opts.Signer.Sign(claims, binding(h, ev.Data), expires))
	msg := &nats.Msg{Subject: eventPrefix + ev.Type, Header: h, Data: ev.Data}
	if delayed {
		msg.Subject = schedPrefix + idToken(ev.ID)
		h.Set("Nats-Schedule", "@at "+when.UTC().Format(time.RFC3339))
		h.Set("Nats-Schedule-Target", eventPrefix+ev.Type)
	}
	if _, err := e.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(StreamName)); err != nil {
		return "", transport.WrapError(transport.CodeUnavailable, "the event could not be stored", err)
	}
	return ev.ID, nil
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:+/=", c) >= 0) {
			return false
		}
	}
	return true
}

// idToken makes an event ID usable as a subject token.
func idToken(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:16])
}

// binding is what an event's signature binds besides the claims: the ID
// and a digest of the attributes, request ID and data.
func binding(h nats.Header, data []byte) string {
	d := sha256.New()
	for _, k := range []string{HeaderID, HeaderSource, HeaderType, HeaderTime, "Content-Type", hRequest} {
		v := h.Get(k)
		fmt.Fprintf(d, "%d:%s\n", len(v), v)
	}
	fmt.Fprintf(d, "%d:", len(data))
	d.Write(data)
	return "event:" + h.Get(HeaderID) + ":" + hex.EncodeToString(d.Sum(nil))
}
