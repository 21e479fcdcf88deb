package tasks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/transport"
)

// Names of what the package keeps in JetStream.
const (
	StreamName       = "FM_TASKS"
	DeadStreamName   = "FM_TASKS_DEAD"
	StatusBucketName = "FM_TASK_STATUS"

	taskPrefix  = "fmtask."
	schedPrefix = "fmsched."
	deadPrefix  = "fmdead."
)

// Defaults of [Options] and [Retry], documented on their fields.
const (
	DefaultRetention      = 24 * time.Hour
	DefaultDedupWindow    = 2 * time.Minute
	DefaultMaxResultBytes = 64 << 10
	DefaultAckWait        = 30 * time.Second
	DefaultMaxAttempts    = 5
	DefaultTimeout        = 30 * time.Second
	DefaultBackoff        = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultConcurrency    = 16
)

// Retry says how the calls of a function run: attempts, timeout, backoff
// and concurrency. A zero field takes the value of [Options.Default], and
// a zero field there takes the package default.
type Retry struct {
	// MaxAttempts bounds the attempts of one task, the first included.
	// Default 5.
	MaxAttempts int
	// Timeout bounds one attempt. Default 30s.
	Timeout time.Duration
	// Backoff is the pause before the second attempt; each later pause
	// doubles, up to MaxBackoff, and is drawn at random from its upper
	// half (jitter). Defaults 1s and 1m.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Concurrency bounds the attempts of the function each dispatcher
	// (each host) runs at once. Default 16.
	Concurrency int
}

func (r Retry) or(d Retry) Retry {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = d.MaxAttempts
	}
	if r.Timeout <= 0 {
		r.Timeout = d.Timeout
	}
	if r.Backoff <= 0 {
		r.Backoff = d.Backoff
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = d.MaxBackoff
	}
	if r.Concurrency <= 0 {
		r.Concurrency = d.Concurrency
	}
	return r
}

var packageRetry = Retry{
	MaxAttempts: DefaultMaxAttempts,
	Timeout:     DefaultTimeout,
	Backoff:     DefaultBackoff,
	MaxBackoff:  DefaultMaxBackoff,
	Concurrency: DefaultConcurrency,
}

// Options configure [New]. The zero value of each field is its default.
// Every host of one mesh must use the same options: the streams and the
// bucket are shared.
type Options struct {
	// Signer signs the claims a task carries and verifies them before each
	// attempt. It is required: use the host's signer, the one that signs
	// forwarded claims, with a key that outlives the process and is the
	// same on every host (broker.Broker.ClaimsKey is, with per-service
	// credentials; without them it is random per process, and tasks
	// stored before a restart would be refused).
	Signer *transport.ClaimsSigner

	// Default applies to every function; Functions overrides it per
	// function, keyed "service.function".
	Default   Retry
	Functions map[string]Retry

	// Replicas is the number of copies of the streams and the bucket on a
	// NATS cluster (1, 3 or 5; default 1).
	Replicas int

	// Memory keeps the streams in memory instead of files: for tests; a
	// broker restart loses them. Default false (file storage).
	Memory bool

	// Retention is how long a status, a dead letter, and a task not yet
	// run are kept; a task's signature expires after it too. Default 24h.
	Retention time.Duration

	// DedupWindow is how long an idempotency key is remembered. Default
	// 2m.
	DedupWindow time.Duration

	// MaxResultBytes bounds the result kept in a status; a larger result
	// is dropped and the status says so. Default 64 KiB.
	MaxResultBytes int

	// AckWait is how long the broker waits before it gives an attempt to
	// another host when the host running it stops answering (it died, or
	// lost the broker). Running attempts are kept alive; this bounds the
	// delay of a redelivery after a crash. Default 30s.
	AckWait time.Duration

	// Authorize, when set, decides each tick of a schedule (package
	// schedules) before it runs, as the policy decides a call: ctx
	// carries the schedule's claims and the caller "schedule.<name>"
	// (reqctx.Claims, reqctx.Caller); an error fails the tick with that
	// error. authz.Authorizer.AuthorizeCall fits. Async calls and event
	// triggers are authorized when they are enqueued or emitted, not here.
	Authorize func(ctx context.Context, service, function string, params []byte) error

	// Logger receives the dispatcher's failures (nil: silent).
	Logger *slog.Logger
}

// Tasks enqueues durable calls and reads their status and dead letters.
// Make one per host with [New]; it is safe for concurrent use. A
// [Dispatcher] runs them.
type Tasks struct {
	js     jetstream.JetStream
	nc     *nats.Conn
	opts   Options
	stream jetstream.Stream
	dead   jetstream.Stream
	status jetstream.KeyValue

	consumers sync.Map // [2]string{service, function} -> struct{}: consumer made by this process
}

// New creates (or updates) the streams and the status bucket in nc's
// JetStream and returns a Tasks that uses them.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Tasks, error) {
	if nc == nil {
		return nil, errors.New("tasks: New: nil connection")
	}
	if opts.Signer == nil {
		return nil, errors.New("tasks: New: Options.Signer is required")
	}
	opts.Default = opts.Default.or(packageRetry)
	for k, r := range opts.Functions {
		if _, _, err := splitKey(k); err != nil {
			return nil, fmt.Errorf("tasks: New: Options.Functions: %w", err)
		}
		if r.MaxAttempts < 0 || r.Timeout < 0 || r.Backoff < 0 || r.MaxBackoff < 0 || r.Concurrency < 0 {
			return nil, fmt.Errorf("tasks: New: Options.Functions[%q]: negative setting", k)
		}
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Replicas < 0 || opts.Replicas > 5 {
		return nil, fmt.Errorf("tasks: New: Options.Replicas %d: want 1 to 5", opts.Replicas)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	if opts.MaxResultBytes == 0 {
		opts.MaxResultBytes = DefaultMaxResultBytes
	}
	if opts.AckWait == 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.Retention < 0 || opts.DedupWindow < 0 || opts.MaxResultBytes < 0 || opts.AckWait < 0 {
		return nil, errors.New("tasks: New: negative duration or size in Options")
	}
	if opts.DedupWindow > opts.Retention {
		opts.DedupWindow = opts.Retention
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("tasks: JetStream: %w", err)
	}
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	t := &Tasks{js: js, nc: nc, opts: opts}
	t.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "funcmesh durable calls waiting to run",
		Subjects:          []string{taskPrefix + ">", schedPrefix + ">"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           storage,
		Replicas:          opts.Replicas,
		MaxAge:            opts.Retention,
		Duplicates:        opts.DedupWindow,
		AllowMsgSchedules: true,
		AllowRollup:       true,
		// Per-message TTLs keep a delayed call past MaxAge until it is
		// due, and a periodic schedule for ever.
		AllowMsgTTL: true,
	})
	if err != nil {
		return nil, fmt.Errorf("tasks: stream %s: %w", StreamName, err)
	}
	t.dead, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadStreamName,
		Description: "funcmesh durable calls that failed for good",
		Subjects:    []string{deadPrefix + ">"},
		Storage:     storage,
		Replicas:    opts.Replicas,
		MaxAge:      opts.Retention,
		Duplicates:  opts.DedupWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("tasks: stream %s: %w", DeadStreamName, err)
	}
	t.status, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StatusBucketName,
		Description: "funcmesh task status",
		TTL:         opts.Retention,
		Storage:     storage,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("tasks: bucket %s: %w", StatusBucketName, err)
	}
	return t, nil
}

// retry returns the settings of service.function.
func (t *Tasks) retry(service, function string) Retry {
	if r, ok := t.opts.Functions[service+"."+function]; ok {
		return r.or(t.opts.Default)
	}
	return t.opts.Default
}

// JetStream returns the JetStream context the Tasks uses, for packages
// built on it (events, schedules).
func (t *Tasks) JetStream() jetstream.JetStream { return t.js }
