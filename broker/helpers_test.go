package broker_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
)

// start runs a Broker that t.Cleanup shuts down.
func start(t testing.TB, opts ...broker.StartOption) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, opts...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// connect makes a connect-mode Broker that t.Cleanup shuts down.
func connect(t testing.TB, urls []string, opts ...broker.ConnectOption) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, urls, opts...)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// echo answers every request on subject with prefix+body.
func echo(t testing.TB, nc *nats.Conn, subject, prefix string) *nats.Subscription {
	t.Helper()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		_ = m.Respond(append([]byte(prefix), m.Data...))
	})
	if err != nil {
		t.Fatalf("Subscribe %s: %v", subject, err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return sub
}

// request makes a request and checks the reply.
func request(t testing.TB, nc *nats.Conn, subject, body, want string) {
	t.Helper()
	m, err := nc.Request(subject, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("Request %s: %v", subject, err)
	}
	if got := string(m.Data); got != want {
		t.Fatalf("reply to %s = %q; want %q", subject, got, want)
	}
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// events records the Events of a Broker.
type events struct {
	mu   sync.Mutex
	list []broker.Event
}

func (e *events) hook(ev broker.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) count(kind broker.EventKind, conn string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.list {
		if ev.Kind == kind && ev.Conn == conn {
			n++
		}
	}
	return n
}

// records is a slog.Handler that keeps every record.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// find reports whether a record's message contains s.
func (r *records) find(level slog.Level, msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.list {
		if rec.Level == level && rec.Message == msg {
			return true
		}
	}
	return false
}

// errs collects a connection's asynchronous errors.
type errs struct {
	ch chan error
}

func newErrs() *errs { return &errs{ch: make(chan error, 100)} }

func (e *errs) option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case e.ch <- err:
		default:
		}
	})
}

// wait returns the first error whose text contains s, within timeout.
func (e *errs) wait(t testing.TB, timeout time.Duration, match func(error) bool) error {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case err := <-e.ch:
			if match(err) {
				return err
			}
		case <-timer.C:
			return nil
		}
	}
}
