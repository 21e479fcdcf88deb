package tasks_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

var testKey = transport.ClaimsKey{ID: "k1", Secret: bytes.Repeat([]byte("s"), 32)}

func signer(t testing.TB) *transport.ClaimsSigner {
	s, err := transport.NewClaimsSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// env is an embedded broker with JetStream, a Tasks and a running
// dispatcher.
type env struct {
	b    *broker.Broker
	q    *tasks.Tasks
	d    *tasks.Dispatcher
	opts tasks.Options
}

func startBroker(t testing.TB, opts ...broker.StartOption) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, append([]broker.StartOption{broker.WithJetStream(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newEnv(t testing.TB, opts tasks.Options) *env {
	t.Helper()
	b := startBroker(t)
	return newEnvOn(t, b, b.Conn(), opts)
}

func newEnvOn(t testing.TB, b *broker.Broker, nc *nats.Conn, opts tasks.Options) *env {
	t.Helper()
	if opts.Signer == nil {
		opts.Signer = signer(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := tasks.New(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	client, err := mesh.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return &env{b: b, q: q, d: d, opts: opts}
}

// service runs a service in the process with the given functions.
func service(t testing.TB, b *broker.Broker, name string, fns map[string]mesh.Handler) *mesh.Service {
	t.Helper()
	nc, err := b.NewConn(name)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mesh.NewService(nc, name)
	if err != nil {
		t.Fatal(err)
	}
	for fn, h := range fns {
		if err := svc.Handle(fn, h); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	return svc
}

// seen records the calls a test function received.
type seen struct {
	mu    sync.Mutex
	calls []seenCall
}

type seenCall struct {
	id, attempt, claims string
	params              string
	at                  time.Time
}

func (s *seen) add(c *mesh.Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	claims, _ := c.ClaimsJSON()
	s.calls = append(s.calls, seenCall{id: c.Header(transport.HeaderTaskID), attempt: c.Header(transport.HeaderTaskAttempt),
		claims: string(claims), params: string(c.Params()), at: time.Now()})
}

func (s *seen) all() []seenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenCall(nil), s.calls...)
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// handlerFunc adapts a function of the call to a mesh.Handler.
func handlerFunc(f func(ctx context.Context, c *mesh.Call) ([]byte, error)) mesh.Handler {
	return mesh.HandlerFunc(f)
}

// waitState polls the status of id until it is want or the deadline.
func waitState(t testing.TB, q *tasks.Tasks, id string, want tasks.State, within time.Duration) *tasks.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	var last *tasks.Status
	for time.Now().Before(deadline) {
		st, err := q.Status(context.Background(), id)
		if err == nil {
			last = st
			if st.State == want {
				return st
			}
		}
		time.Sleep(20 * time.Millisecond) // poll interval; the deadline is above
	}
	t.Fatalf("task %s: state %+v after %v; want %s", id, last, within, want)
	return nil
}

// eventually polls cond until it holds or the deadline.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval; the deadline is above
	}
}
