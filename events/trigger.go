package events

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// Start starts the triggers: each takes its events from its consumer and
// enqueues a task per event. Every host may run them; they share the work.
// A trigger whose consumer is deleted while it runs (by hand, or with the
// stream, which New makes again) makes it again and goes on.
func (e *Events) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		return errors.New("events: started twice")
	}
	e.run, e.stop = context.WithCancel(context.Background())
	e.halt, e.stopRemaking = context.WithCancel(context.Background())
	e.contexts = map[string]jetstream.ConsumeContext{}
	e.done = map[string]*progress{}
	for i := range e.opts.Triggers {
		tr := &e.opts.Triggers[i]
		cons, err := e.stream.Consumer(ctx, "tr_"+tr.Name)
		if err == nil {
			e.done[tr.Name] = &progress{seq: cons.CachedInfo().AckFloor.Stream}
			err = e.consume(tr, cons)
		}
		if err != nil {
			e.stopRemaking()
			for _, cc := range e.contexts {
				cc.Stop()
			}
			e.contexts = nil
			e.stop()
			return err
		}
	}
	return nil
}

// consume starts taking tr's events from cons, in place of any consumption
// of tr before. e.mu is held.
func (e *Events) consume(tr *Trigger, cons jetstream.Consumer) error {
	done := e.done[tr.Name]
	var left uint64 // an event left to the broker to deliver again: done stays below it
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e.wg.Add(1)
		defer e.wg.Done()
		finished := e.fire(e.run, tr, m)
		// The events arrive one at a time, in order of the stream.
		md, err := m.Metadata()
		if err != nil {
			return
		}
		seq := md.Sequence.Stream
		if !finished {
			if left == 0 {
				left = seq
			}
			return
		}
		if seq == left {
			left = 0
		}
		if left == 0 {
			done.finished(seq, md.Timestamp)
		}
	}, jetstream.PullMaxMessages(64), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrConsumerDeleted):
				e.remake(tr, false)
			case errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, nats.ErrNoResponders):
				// Deleted while the connection was down, the pull does
				// not hear of it: ask the broker.
				e.remake(tr, true)
			}
		}))
	if err != nil {
		return err
	}
	if old := e.contexts[tr.Name]; old != nil {
		old.Stop()
	}
	e.contexts[tr.Name] = cc
	return nil
}

// remake makes tr's consumer again and consumes from it, retrying until it
// can or Stop is called; with check, only when the broker says the
// consumer is gone. It returns at once: the work runs in a goroutine, one
// per trigger at a time.
func (e *Events) remake(tr *Trigger, check bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.halt.Err() != nil || e.remaking[tr.Name] {
		return
	}
	if e.remaking == nil {
		e.remaking = map[string]bool{}
	}
	e.remaking[tr.Name] = true
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer func() {
			e.mu.Lock()
			delete(e.remaking, tr.Name)
			e.mu.Unlock()
		}()
		if check {
			ctx, cancel := context.WithTimeout(e.halt, 5*time.Second)
			_, err := e.stream.Consumer(ctx, "tr_"+tr.Name)
			cancel()
			if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return
			}
		}
		e.log.Warn("events: a trigger's consumer is gone, making it again", "trigger", tr.Name)
		cfg := e.done[tr.Name].resume(tr.consumerConfig(), time.Now())
		// The broker tells the pull of the deletion before it has removed
		// the consumer's files; one of the same name made at once can lose
		// its own files to that removal (nats-server 2.15: later updates
		// of it fail, "error creating store for consumer"). So wait first.
		wait := remakeDelay
		for {
			select {
			case <-e.halt.Done():
				return
			case <-time.After(wait):
			}
			ctx, cancel := context.WithTimeout(e.halt, 10*time.Second)
			cons, err := e.stream.CreateOrUpdateConsumer(ctx, cfg)
			if err != nil {
				// Another host may have made it first, from where it
				// was: one that is there is used as it is.
				if c, cerr := e.stream.Consumer(ctx, "tr_"+tr.Name); cerr == nil {
					cons, err = c, nil
				}
			}
			cancel()
			if err == nil {
				e.mu.Lock()
				if e.halt.Err() == nil {
					err = e.consume(tr, cons)
				}
				e.mu.Unlock()
				if err == nil {
					return
				}
			}
			if e.halt.Err() != nil {
				return
			}
			e.log.Warn("events: making a trigger's consumer again", "trigger", tr.Name, "error", err)
			wait = min(2*wait, 2*time.Second)
		}
	}()
}

// remakeDelay is how long a trigger waits before it makes its deleted
// consumer again.
const remakeDelay = 250 * time.Millisecond

// maxReplay bounds how far back a trigger's consumer made again starts:
// within it, tasks enqueued twice are one (their idempotency keys, the
// tasks' de-duplication window being 2 minutes by default).
const maxReplay = time.Minute

// progress is how far a trigger has got on this host.
type progress struct {
	mu  sync.Mutex
	seq uint64    // stream sequence of the last event finished, in order
	at  time.Time // when it was stored; zero when not known
}

func (p *progress) finished(seq uint64, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq > p.seq {
		p.seq, p.at = seq, at
	}
}

// resume returns cfg starting where a consumer made again should, not at
// new events only as a new trigger does: after the last event this host
// finished, so that the events stored meanwhile fire; but no further back
// than maxReplay before now, where that event is older (this host may
// have had none of the events other hosts finished since; at worst the
// events older than that and not yet finished when the consumer went are
// not fired).
func (p *progress) resume(cfg jetstream.ConsumerConfig, now time.Time) jetstream.ConsumerConfig {
	p.mu.Lock()
	defer p.mu.Unlock()
	if since := now.Add(-maxReplay); p.at.Before(since) {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
		return cfg
	}
	cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cfg.OptStartSeq = p.seq + 1
	return cfg
}

// Stop stops taking events; events being turned into tasks finish first.
func (e *Events) Stop() {
	e.mu.Lock()
	if e.stopRemaking != nil {
		e.stopRemaking()
	}
	contexts := e.contexts
	e.contexts = nil
	e.mu.Unlock()
	for _, cc := range contexts {
		cc.Stop()
	}
	e.wg.Wait()
	if e.stop != nil {
		e.stop()
	}
}

// fire turns one event into the trigger's task. It reports whether the
// event is finished with (its task enqueued, or the event refused for
// good), not left for the broker to deliver again.
func (e *Events) fire(ctx context.Context, tr *Trigger, m jetstream.Msg) bool {
	h := m.Headers()
	claims := h.Get(hClaims)
	exp, err := strconv.ParseInt(h.Get(hExpires), 10, 64)
	if err != nil || e.opts.Signer.Verify(h.Get(hSig), claims, binding(h, m.Data()), time.UnixMilli(exp), time.Now()) != nil {
		e.log.Warn("events: event refused: its signature does not hold or it expired", "trigger", tr.Name, "subject", m.Subject(), "id", h.Get(HeaderID))
		_ = m.Term()
		return true
	}
	if claims != "" {
		c, err := transport.DecodeClaims(claims)
		if err != nil {
			_ = m.Term()
			return true
		}
		ctx = reqctx.WithClaims(ctx, c, []byte(claims))
	}
	ctx = reqctx.WithRequestID(ctx, h.Get(hRequest))
	pass := nats.Header{}
	for _, k := range []string{HeaderSpecVersion, HeaderID, HeaderSource, HeaderType, HeaderTime} {
		if v := h.Get(k); v != "" {
			pass[k] = []string{v}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = e.q.Enqueue(pctx, tasks.Call{
		Service:        tr.Service,
		Function:       tr.Function,
		Params:         m.Data(),
		ContentType:    h.Get("Content-Type"),
		IdempotencyKey: "event/" + h.Get(HeaderSource) + "/" + h.Get(HeaderID) + "/" + tr.Name,
		Retry:          tr.Retry,
		Header:         pass,
	})
	if err != nil {
		e.log.Warn("events: enqueueing a trigger's task", "trigger", tr.Name, "error", err)
		_ = m.NakWithDelay(time.Second)
		return false
	}
	_ = m.Ack()
	return true
}
