package events

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// Start starts the triggers: each takes its events from its consumer and
// enqueues a task per event. Every host may run them; they share the work.
func (e *Events) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		return errors.New("events: started twice")
	}
	runCtx, stop := context.WithCancel(context.Background())
	e.stop = stop
	for _, tr := range e.opts.Triggers {
		cons, err := e.stream.Consumer(ctx, "tr_"+tr.Name)
		if err != nil {
			stop()
			return err
		}
		tr := tr
		cc, err := cons.Consume(func(m jetstream.Msg) {
			e.wg.Add(1)
			defer e.wg.Done()
			e.fire(runCtx, &tr, m)
		}, jetstream.PullMaxMessages(64), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
		if err != nil {
			stop()
			return err
		}
		e.contexts = append(e.contexts, cc)
	}
	return nil
}

// Stop stops taking events; events being turned into tasks finish first.
func (e *Events) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cc := range e.contexts {
		cc.Stop()
	}
	e.contexts = nil
	e.wg.Wait()
	if e.stop != nil {
		e.stop()
	}
}

// fire turns one event into the trigger's task.
func (e *Events) fire(ctx context.Context, tr *Trigger, m jetstream.Msg) {
	h := m.Headers()
	claims := h.Get(hClaims)
	exp, err := strconv.ParseInt(h.Get(hExpires), 10, 64)
	if err != nil || e.opts.Signer.Verify(h.Get(hSig), claims, binding(h, m.Data()), time.UnixMilli(exp), time.Now()) != nil {
		e.log.Warn("events: event refused: its signature does not hold or it expired", "trigger", tr.Name, "subject", m.Subject(), "id", h.Get(HeaderID))
		_ = m.Term()
		return
	}
	if claims != "" {
		c, err := transport.DecodeClaims(claims)
		if err != nil {
			_ = m.Term()
			return
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
		return
	}
	_ = m.Ack()
}
