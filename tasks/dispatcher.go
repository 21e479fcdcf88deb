package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// runningAfter is how long the first attempt of a task runs before its
// status reads "running" (see attempt); until then it reads "pending".
const runningAfter = 50 * time.Millisecond

// rescanEvery is how often a dispatcher lists the consumers, in case it
// missed the advisory of a new one (it was disconnected then).
const rescanEvery = 5 * time.Second

// Dispatcher runs the tasks: in every host, one per [Tasks]. Every
// dispatcher pulls from the same durable consumers, so the hosts share the
// work and a task runs on one of them. Make it with [Tasks.NewDispatcher],
// then Start and Stop it.
type Dispatcher struct {
	t      *Tasks
	client *mesh.Client
	log    *slog.Logger

	mu      sync.Mutex
	runners map[string]*runner
	started bool

	pull     context.Context // ends on Stop: no more tasks are taken
	stopPull context.CancelFunc
	hard     context.Context // ends when Stop gives up: attempts are cancelled
	stopHard context.CancelFunc
	wg       sync.WaitGroup // runners and attempts
	sub      *nats.Subscription
}

// NewDispatcher returns a dispatcher that calls the functions through
// client.
func (t *Tasks) NewDispatcher(client *mesh.Client) *Dispatcher {
	if client == nil {
		panic("tasks: NewDispatcher: nil client")
	}
	log := t.opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{t: t, client: client, log: log, runners: map[string]*runner{}}
}

// Start starts taking tasks of every function that has a consumer, and of
// each function that gets one later. ctx bounds the start only.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return errors.New("tasks: Dispatcher started twice")
	}
	d.started = true
	d.pull, d.stopPull = context.WithCancel(context.Background())
	d.hard, d.stopHard = context.WithCancel(context.Background())
	d.mu.Unlock()

	sub, err := d.t.nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED."+StreamName+".*", func(m *nats.Msg) {
		name := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		d.add(d.pull, name)
	})
	if err != nil {
		return err
	}
	d.sub = sub
	if err := d.scan(ctx); err != nil {
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		tick := time.NewTicker(rescanEvery)
		defer tick.Stop()
		for {
			select {
			case <-d.pull.Done():
				return
			case <-tick.C:
				ctx, cancel := context.WithTimeout(d.pull, rescanEvery)
				if err := d.scan(ctx); err != nil && d.pull.Err() == nil {
					d.log.Warn("tasks: listing consumers", "error", err)
				}
				cancel()
			}
		}
	}()
	return nil
}

// scan starts a runner for every function consumer not yet served.
func (d *Dispatcher) scan(ctx context.Context) error {
	names := d.t.stream.ConsumerNames(ctx)
	for name := range names.Name() {
		d.add(ctx, name)
	}
	return names.Err()
}

func (d *Dispatcher) add(ctx context.Context, name string) {
	if !strings.HasPrefix(name, "fn_") {
		return
	}
	d.mu.Lock()
	_, running := d.runners[name]
	d.mu.Unlock()
	if running || d.pull.Err() != nil {
		return
	}
	if ctx == d.pull {
		// Advisory callbacks run on the connection's goroutine: look the
		// consumer up elsewhere.
		go d.add(context.WithoutCancel(d.pull), name)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := d.t.stream.Consumer(ctx, name)
	if err != nil {
		d.log.Warn("tasks: consumer", "consumer", name, "error", err)
		return
	}
	svc, fn, ok := functionOf(cons.CachedInfo().Config.FilterSubject)
	if !ok {
		return
	}
	r := &runner{d: d, service: svc, function: fn, cons: cons, retry: d.t.retry(svc, fn)}
	d.mu.Lock()
	if _, running := d.runners[name]; running || d.pull.Err() != nil {
		d.mu.Unlock()
		return
	}
	d.runners[name] = r
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		r.run()
	}()
}

// Stop stops taking tasks and waits for the attempts running to end, until
// ctx is done; then it cancels them, and they go back to the queue at once
// for another host (their attempt counts).
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.mu.Lock()
	if !d.started {
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()
	if d.sub != nil {
		_ = d.sub.Unsubscribe()
	}
	d.stopPull()
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		d.stopHard()
		return nil
	case <-ctx.Done():
		d.stopHard()
		<-done
		return ctx.Err()
	}
}

// runner takes the tasks of one function.
type runner struct {
	d                 *Dispatcher
	service, function string
	cons              jetstream.Consumer
	retry             Retry
	pausedUntil       atomic.Int64 // Unix ns: a 429 pauses taking new tasks
}

func (r *runner) run() {
	d := r.d
	sem := make(chan struct{}, r.retry.Concurrency)
	// gen is the connection's reconnect count when the iterator started:
	// a delivery taken from it after a reconnect may have been buffered
	// before it, and a broker that restarted meanwhile delivers it again,
	// so it is dropped (see attempt).
	gen, it, err := r.messages()
	if err != nil {
		d.log.Warn("tasks: consuming", "service", r.service, "function", r.function, "error", err)
		d.mu.Lock()
		delete(d.runners, consumerName(r.service, r.function))
		d.mu.Unlock()
		return
	}
	var itMu sync.Mutex // it is replaced after a reconnect
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-d.pull.Done():
		case <-stopped:
		}
		itMu.Lock()
		it.Stop()
		itMu.Unlock()
	}()
	errWait := 50 * time.Millisecond
	// restart replaces the iterator (after making the consumer again if
	// remake), retrying until it can; false when the dispatcher stops.
	restart := func(remake bool) bool {
		// The broker tells the pull of a deletion before it has removed
		// the consumer's files; one of the same name made at once can
		// lose its own files to that removal (nats-server 2.15: later
		// writes of it fail, "error creating store for consumer"). So
		// wait first.
		if remake && !sleep(d.pull, remakeDelay) {
			return false
		}
		for {
			var ngen pullGen
			var nit jetstream.MessagesContext
			err := d.pull.Err()
			if err == nil && remake {
				ctx, cancel := context.WithTimeout(d.pull, 10*time.Second)
				var cons jetstream.Consumer
				if cons, err = d.t.makeConsumer(ctx, r.service, r.function); err == nil {
					r.cons = cons
				}
				cancel()
			}
			if err == nil {
				ngen, nit, err = r.messages()
			}
			if err == nil {
				itMu.Lock()
				it.Stop()
				gen, it = ngen, nit
				itMu.Unlock()
				errWait = 50 * time.Millisecond
				return d.pull.Err() == nil
			}
			if !sleep(d.pull, errWait) {
				return false
			}
			errWait = min(2*errWait, 2*time.Second)
		}
	}
	for {
		select {
		case sem <- struct{}{}:
		case <-d.pull.Done():
			return
		}
		if wait := time.Until(time.Unix(0, r.pausedUntil.Load())); wait > 0 {
			if !sleep(d.pull, wait) {
				return
			}
		}
		msg, err := it.Next()
		switch {
		case err == nil && d.t.reconnectedSince(gen):
			// Reconnected since the iterator started: drop what it
			// holds (neither acknowledged nor refused: after a
			// restart the broker's redelivery of the same task may be
			// running, and an acknowledgement names the task, not the
			// delivery) and pull afresh. The broker redelivers what
			// was dropped after its AckWait.
			<-sem
			if !restart(false) {
				return
			}
			continue
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrMsgIteratorClosed):
			// The consumer was deleted (by hand, or with its stream,
			// which New makes again at the next start): make it again,
			// or the function's tasks would wait for a restart.
			<-sem
			if d.pull.Err() != nil {
				return
			}
			d.log.Warn("tasks: consumer gone, making it again", "function", r.service+"."+r.function, "error", err)
			if !restart(true) {
				return
			}
			continue
		case err != nil:
			<-sem
			if d.pull.Err() != nil {
				return
			}
			if r.consumerGone() {
				// Deleted while the pull did not hear of it (the
				// connection was down then).
				if !restart(true) {
					return
				}
				continue
			}
			if !sleep(d.pull, errWait) {
				return
			}
			errWait = min(2*errWait, 2*time.Second)
			continue
		}
		errWait = 50 * time.Millisecond
		d.wg.Add(1)
		go func(gen pullGen) {
			defer d.wg.Done()
			defer func() { <-sem }()
			r.attempt(msg, gen)
		}(gen)
	}
}

// remakeDelay is how long a runner waits before it makes its deleted
// consumer again.
const remakeDelay = 250 * time.Millisecond

// consumerGone reports whether the broker says the function's consumer
// does not exist.
func (r *runner) consumerGone() bool {
	ctx, cancel := context.WithTimeout(r.d.pull, 5*time.Second)
	defer cancel()
	_, err := r.cons.Info(ctx)
	return errors.Is(err, jetstream.ErrConsumerNotFound)
}

// messages starts pulling the function's tasks: gen is the connection's
// reconnect count before the pull began, with what the pull knows of the
// broker.
func (r *runner) messages() (gen pullGen, it jetstream.MessagesContext, err error) {
	gen = pullGen{reconnects: r.d.t.nc.Stats().Reconnects, fresh: math.MaxUint64}
	ctx, cancel := context.WithTimeout(r.d.pull, 10*time.Second)
	defer cancel()
	info, err := r.d.t.stream.Info(ctx)
	if err != nil {
		return gen, nil, err
	}
	// A broker that forgets deliveries (a restart from a store that had
	// not written them, a consumer's leader lost on a cluster) can
	// deliver a finished task again as a first delivery. A task stored
	// after this point cannot have been delivered before, unless the
	// broker restarts, and then the connection reconnects first (gen no
	// longer holds). That is known only when the stream is on the very
	// server this connection reaches, alone (no cluster): elsewhere a
	// broker can change under an unbroken connection.
	if c := info.Cluster; c != nil && c.Name == "" && c.Leader != "" && c.Leader == r.d.t.nc.ConnectedServerName() {
		gen.fresh = info.State.LastSeq
	}
	it, err = r.cons.Messages(jetstream.PullMaxMessages(r.retry.Concurrency),
		// Short pulls: after a consumer leader change (a cluster node
		// lost) the missed heartbeats show it within seconds.
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	return gen, it, err
}

// pullGen is what a dispatcher knows of the deliveries of one pull.
type pullGen struct {
	// reconnects is the connection's reconnect count when the pull began.
	reconnects uint64
	// fresh is the stream sequence after which a first delivery is the
	// task's first ever; MaxUint64 when that cannot be known.
	fresh uint64
}

// firstEver reports whether a first delivery at stream sequence seq
// cannot be a task delivered (and perhaps finished) before.
func (g pullGen) firstEver(numDelivered, seq uint64) bool {
	return numDelivered == 1 && seq > g.fresh
}

// attempt runs one delivery of a task, taken from the pull gen.
func (r *runner) attempt(msg jetstream.Msg, gen pullGen) {
	d, t := r.d, r.d.t
	ctx := d.hard
	if t.reconnectedSince(gen) {
		return // dropped, as run does
	}
	md, err := msg.Metadata()
	if err != nil {
		_ = msg.Nak()
		return
	}
	attempt := int(md.NumDelivered)
	tk, err := decodeTask(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		t.deadLetterInvalid(ctx, msg, "malformed task: "+err.Error())
		_ = msg.Ack()
		return
	}
	now := time.Now().UTC() // UTC: a status is JSON, and UTC times encode fastest
	st := &Status{ID: tk.id, Service: tk.service, Function: tk.function, Enqueued: tk.enqueued.UTC(),
		Attempts: attempt - 1, Owner: ownerKey(owner(tk.claims))}
	if err := tk.verify(t.opts.Signer, now); err != nil {
		reason := "the claims signature does not hold: the task was altered or signed with an unknown key"
		if errors.Is(err, transport.ErrClaimsExpired) {
			reason = "the task expired before it could run"
		}
		st.Owner = "" // nobody's claims can be trusted
		r.fail(ctx, msg, tk, st, transport.NewError(transport.CodePermissionDenied, reason))
		return
	}
	if schedule := tk.schedule; schedule != "" && msg.Headers().Get("Nats-Scheduler") != "" && tk.template == "" {
		// A tick of a schedule: a task of its own, named by the stream
		// sequence JetStream stored it at.
		tk.template, tk.id = tk.id, tickID(tk.id, md.Sequence.Stream)
		st.ID = tk.id
		if !r.tick(ctx, msg, tk, st, schedule) {
			return
		}
	}
	// A delivery looks at the status first, unless it is provably the
	// task's first (gen.firstEver): a cluster that lost a consumer
	// leader, or a broker killed with its host, may deliver a finished
	// task again with its count reset. Another first delivery creates its
	// "running" status only if there is none, which is that look in the
	// same round trip.
	markRunning := func() {
		st.State, st.Attempts, st.Updated, st.Due = StateRunning, attempt, now, nil
		st.History = append(st.History, now)
		if len(st.History) > 20 {
			st.History = st.History[len(st.History)-20:]
		}
	}
	var (
		runMu   sync.Mutex
		running jetstream.PubAckFuture // the "running" status in flight
		ended   bool                   // the attempt ended: no "running" any more
		late    *time.Timer
	)
	created := false
	switch {
	case gen.firstEver(md.NumDelivered, md.Sequence.Stream):
		// Nothing to look at. The "running" status is written once
		// the attempt has run for runningAfter: a quick attempt goes
		// from pending to its result in one write.
		markRunning()
		created = true
		late = time.AfterFunc(runningAfter, func() {
			runMu.Lock()
			defer runMu.Unlock()
			if !ended {
				running = t.putStatusAsync(st)
			}
		})
	case attempt == 1:
		markRunning()
		b, err := json.Marshal(st)
		if err != nil {
			_ = msg.Nak()
			return
		}
		// While the bucket has no leader (a cluster electing one) the
		// look waits: running without it could run a finished task.
		if !r.untilStored(msg, "creating a status", func(ctx context.Context) error {
			_, err := t.status.Create(ctx, tk.id, b)
			if errors.Is(err, jetstream.ErrKeyExists) {
				return nil
			}
			created = err == nil
			return err
		}) {
			return // left to the broker, which delivers it again
		}
		if !created {
			st.History, st.Attempts = nil, 0
		}
	}
	if !created {
		var prev *Status
		if !r.untilStored(msg, "reading a status", func(ctx context.Context) error {
			p, _, err := t.loadStatus(ctx, tk.id)
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, errBadStatus) {
				return nil
			}
			prev = p
			return err
		}) {
			return
		}
		if prev != nil {
			if prev.State.Final() && (attempt > 1 || prev.enqueuedSame(tk)) {
				// Done before: the acknowledgement was lost.
				_ = msg.Ack()
				return
			}
			st.History = prev.History
			st.Error = prev.Error
			if prev.Attempts >= attempt && prev.enqueuedSame(tk) {
				// The broker forgot deliveries: count on from the status.
				attempt = prev.Attempts + 1
			}
		}
		if attempt > tk.retry.MaxAttempts {
			r.fail(ctx, msg, tk, st, transport.NewError(transport.CodeUnavailable,
				"no attempts left: the last attempt was interrupted (its host stopped or lost the broker)"))
			return
		}
		markRunning()
		running = t.putStatusAsync(st)
	}
	endRunning := func() {
		if late != nil {
			late.Stop()
		}
		runMu.Lock()
		ended = true
		f := running
		runMu.Unlock()
		if f != nil {
			select {
			case <-f.Ok():
			case <-f.Err():
			case <-time.After(5 * time.Second):
			}
		}
	}

	// Keep the attempt ours while it runs, unless the host lost the
	// broker meanwhile: the reply may be lost with the connection, and
	// waiting for it would hold the task for the whole attempt timeout
	// (found by TestBrokerRestart), so the attempt ends and is retried.
	callCtx, cancelCall := context.WithCancel(ctx)
	defer cancelCall()
	var interrupted atomic.Bool
	if t.reconnectedSince(gen) {
		// Taken before the connection was lost: the broker may have
		// given it to another attempt since (as run drops it).
		endRunning()
		return
	}
	keepEvery := max(t.opts.AckWait/3, 10*time.Millisecond)
	var (
		keepMu  sync.Mutex
		keeping = true
		keeper  *time.Timer
	)
	keepMu.Lock()
	keeper = time.AfterFunc(keepEvery, func() {
		keepMu.Lock()
		defer keepMu.Unlock()
		if !keeping {
			return
		}
		if t.reconnectedSince(gen) {
			interrupted.Store(true)
			cancelCall()
			return
		}
		_ = msg.InProgress()
		keeper.Reset(keepEvery)
	})
	keepMu.Unlock()
	rep, err := r.call(callCtx, tk, attempt)
	keepMu.Lock()
	keeping = false
	keeper.Stop()
	keepMu.Unlock()
	if err != nil && interrupted.Load() {
		err = transport.NewError(transport.CodeUnavailable, "the attempt was interrupted: the host lost the broker during the call")
	}
	endRunning()
	now = time.Now().UTC()
	st.Updated = now
	if err == nil {
		st.State, st.Error = StateSucceeded, nil
		t.setResult(st, rep.Body, rep.ContentType)
		if !r.putStatusKept(msg, st) {
			// Not stored: acknowledged, the task would read "running"
			// for good. The broker delivers it again instead.
			return
		}
		_ = msg.Ack()
		return
	}
	e := transport.AsError(err)
	st.Error = &StatusError{Code: e.Code(), Status: e.HTTPStatus(), Message: e.Message()}
	if d.hard.Err() != nil {
		// The host is stopping: give the task back at once.
		st.State = StatePending
		t.putStatusRetrying(context.WithoutCancel(ctx), st)
		_ = msg.Nak()
		return
	}
	status := e.HTTPStatus()
	retryable := status >= 500 || status == http.StatusTooManyRequests
	if !retryable || attempt >= tk.retry.MaxAttempts {
		r.fail(ctx, msg, tk, st, e)
		return
	}
	if t.reconnectedSince(gen) {
		// The connection was lost during the attempt: a refusal sent
		// now could reach a broker that restarted and has given the
		// task to another attempt already (it names the task, not the
		// delivery), so none is sent; the broker redelivers the task
		// after its AckWait.
		st.State = StatePending
		r.putStatusKept(msg, st)
		return
	}
	delay := backoff(tk.retry, attempt)
	due := now.Add(delay)
	st.State, st.Due = StatePending, &due
	r.putStatusKept(msg, st)
	if status == http.StatusTooManyRequests {
		r.pausedUntil.Store(due.UnixNano())
	}
	_ = msg.NakWithDelay(delay)
}

// call makes one attempt of tk.
func (r *runner) call(ctx context.Context, tk *task, attempt int) (mesh.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, tk.retry.Timeout)
	defer cancel()
	if tk.claims != "" {
		claims, err := transport.DecodeClaims(tk.claims)
		if err != nil {
			return mesh.Reply{}, transport.WrapError(transport.CodeInvalidArgument, "the task's claims cannot be read", err)
		}
		ctx = reqctx.WithClaims(ctx, claims, []byte(tk.claims))
	}
	ctx = reqctx.WithRequestID(ctx, tk.requestID)
	h := make(nats.Header, len(tk.extra)+2)
	for k, v := range tk.extra {
		h[k] = v
	}
	h[transport.HeaderTaskID] = []string{tk.id}
	h[transport.HeaderTaskAttempt] = []string{strconv.Itoa(attempt)}
	return r.d.client.Do(ctx, &mesh.Request{
		Service:     tk.service,
		Function:    tk.function,
		Params:      tk.params,
		ContentType: tk.contentType,
		Header:      h,
	})
}

// fail ends a task for good: a dead letter, the failed status, and the
// message acknowledged.
func (r *runner) fail(ctx context.Context, msg jetstream.Msg, tk *task, st *Status, e *transport.Error) {
	t := r.d.t
	st.State, st.Updated, st.Due = StateFailed, time.Now(), nil
	st.Error = &StatusError{Code: e.Code(), Status: e.HTTPStatus(), Message: e.Message()}
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	if err := t.deadLetter(ctx, tk, st, seq); err != nil {
		// Not stored: keep the task, try again later.
		r.d.log.Warn("tasks: storing a dead letter", "task", tk.id, "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if !r.putStatusKept(msg, st) {
		return // delivered again; the dead letter is not stored twice (its Nats-Msg-Id)
	}
	_ = msg.Ack()
}

// backoff is the pause after attempt n (from 1): Backoff doubled n-1
// times, at most MaxBackoff, drawn from its upper half.
func backoff(r Retry, n int) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// putStatusAsync publishes st without waiting for the acknowledgement.
func (t *Tasks) putStatusAsync(st *Status) jetstream.PubAckFuture {
	b, err := json.Marshal(st)
	if err != nil {
		return nil
	}
	f, err := t.js.PublishAsync("$KV."+StatusBucketName+"."+st.ID, b)
	if err != nil {
		return nil
	}
	return f
}

// storeGiveUp bounds how long an attempt waits for the status bucket
// (see untilStored).
const storeGiveUp = 2 * time.Minute

// untilStored runs op until it succeeds, backing off from 100 ms to 1 s,
// keeping the delivery msg meanwhile (the bucket can be without a leader
// for seconds while a cluster elects one: TestClusterLosesNode found
// statuses given up after 1.5 s and tasks left "running" for good). It
// gives up after storeGiveUp, or when the dispatcher stops for good, and
// then reports false: the caller leaves msg to the broker.
func (r *runner) untilStored(msg jetstream.Msg, what string, op func(ctx context.Context) error) bool {
	t := r.d.t
	keepEvery := max(t.opts.AckWait/3, 10*time.Millisecond)
	start := time.Now()
	kept := start
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(r.d.hard, 5*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return true
		}
		if r.d.hard.Err() != nil || time.Since(start) > storeGiveUp {
			r.d.log.Warn("tasks: "+what+", given up", "function", r.service+"."+r.function, "error", err)
			return false
		}
		if time.Since(kept) >= keepEvery {
			_ = msg.InProgress()
			kept = time.Now()
		}
		if !sleep(r.d.hard, wait) {
			return false
		}
		wait = min(2*wait, time.Second)
	}
}

// putStatusKept writes st as untilStored does: a final status whatever is
// stored, another status unless the stored one is newer (see
// putStatusUnlessNewer).
func (r *runner) putStatusKept(msg jetstream.Msg, st *Status) bool {
	t := r.d.t
	first := true
	return r.untilStored(msg, "writing a status", func(ctx context.Context) error {
		if first && st.State.Final() {
			first = false
			return t.putStatus(ctx, st)
		}
		return t.putStatusUnlessNewer(ctx, st)
	})
}

// putStatusRetrying writes st, trying a few times over a few seconds,
// where no delivery is held. A status that is not final, and any retry,
// never overwrites a newer status: after a broker restart a task can be
// delivered twice at once (a delivery from before the restart and the
// redelivery), and the attempt that failed must not leave the one that
// succeeded "pending" for good (found by TestBrokerRestart).
func (t *Tasks) putStatusRetrying(ctx context.Context, st *Status) {
	wait := 100 * time.Millisecond
	for i := 0; ; i++ {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		var err error
		if i == 0 && st.State.Final() {
			err = t.putStatus(pctx, st)
		} else {
			err = t.putStatusUnlessNewer(pctx, st)
		}
		cancel()
		if err == nil || i == 4 {
			if err != nil && t.opts.Logger != nil {
				t.opts.Logger.Warn("tasks: writing a status", "task", st.ID, "error", err)
			}
			return
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// putStatusUnlessNewer writes st unless the stored status is newer: later,
// or final while st is not.
func (t *Tasks) putStatusUnlessNewer(ctx context.Context, st *Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	prev, rev, err := t.loadStatus(ctx, st.ID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = t.status.Create(ctx, st.ID, b)
	case err != nil:
		return err
	case prev.Updated.After(st.Updated) || (prev.State.Final() && !st.State.Final()):
		return nil
	default:
		_, err = t.status.Update(ctx, st.ID, b, rev)
	}
	return err // a conflict: the next try compares again
}

// tick prepares the first delivery of a schedule's tick: the policy's
// word on it (Options.Authorize), and the overlap setting. It reports
// whether the tick runs; if not, it has dealt with msg.
func (r *runner) tick(ctx context.Context, msg jetstream.Msg, tk *task, st *Status, schedule string) bool {
	t := r.d.t
	key := "schedule_" + schedule
	if t.opts.Authorize != nil {
		actx := reqctx.WithCaller(ctx, transport.Caller{Service: "schedule", Function: schedule})
		if tk.claims != "" {
			if claims, err := transport.DecodeClaims(tk.claims); err == nil {
				actx = reqctx.WithClaims(actx, claims, []byte(tk.claims))
			}
		}
		if err := t.opts.Authorize(actx, tk.service, tk.function, tk.params); err != nil {
			r.fail(ctx, msg, tk, st, transport.AsError(err))
			return false
		}
	}
	if tk.overlap == "skip" {
		if e, err := t.status.Get(ctx, key); err == nil && string(e.Value()) != tk.id {
			if prev, _, err := t.loadStatus(ctx, string(e.Value())); err == nil && !prev.State.Final() {
				// The previous run goes on: this tick is skipped.
				st.State, st.Updated = StateSkipped, time.Now()
				if r.putStatusKept(msg, st) {
					_ = msg.Ack()
				}
				return false
			}
		}
	}
	if _, err := t.status.Put(ctx, key, []byte(tk.id)); err != nil {
		_ = msg.NakWithDelay(time.Second)
		return false
	}
	return true
}

// reconnectedSince reports whether the connection is down or was
// re-established since the pull gen began.
func (t *Tasks) reconnectedSince(gen pullGen) bool {
	return !t.nc.IsConnected() || t.nc.Stats().Reconnects != gen.reconnects
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
