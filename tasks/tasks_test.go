package tasks_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

func withClaims(ctx context.Context, raw string) context.Context {
	c, err := transport.DecodeClaims(raw)
	if err != nil {
		panic(err)
	}
	return reqctx.WithClaims(ctx, c, []byte(raw))
}

func TestEnqueueRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	service(t, e.b, "mail", map[string]mesh.Handler{
		"send": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			s.add(c)
			return []byte(`{"sent":true}`), nil
		}),
	})
	ctx := withClaims(reqctx.WithRequestID(context.Background(), "req-1"), `{"sub":"u1","role":"user"}`)
	rc, err := e.q.Enqueue(ctx, tasks.Call{Service: "mail", Function: "send", Params: []byte(`{"to":"a@b"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !tasks.ValidID(rc.ID) || rc.Duplicate {
		t.Fatalf("receipt %+v; want a new valid ID", rc)
	}
	st := waitState(t, e.q, rc.ID, tasks.StateSucceeded, 10*time.Second)
	if string(st.Result) != `{"sent":true}` || st.Attempts != 1 || st.Service != "mail" || st.Function != "send" {
		t.Errorf("status %+v; want the result after 1 attempt", st)
	}
	calls := s.all()
	if len(calls) != 1 {
		t.Fatalf("%d calls; want 1", len(calls))
	}
	c := calls[0]
	if c.id != rc.ID || c.attempt != "1" || c.claims != `{"sub":"u1","role":"user"}` || c.params != `{"to":"a@b"}` {
		t.Errorf("the function saw %+v; want task %s attempt 1 with the claims and params", c, rc.ID)
	}
}

// TestStatusRunning: a task reads pending, then running while its
// attempt lasts, then its result; a quick task is written once (pending
// to succeeded), not twice.
func TestStatusRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	release := make(chan struct{})
	service(t, e.b, "mail", map[string]mesh.Handler{
		"slow": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return []byte(`"slow"`), nil
		}),
		"quick": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			return []byte(`"quick"`), nil
		}),
	})
	rc, err := e.q.Enqueue(context.Background(), tasks.Call{Service: "mail", Function: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	st := waitState(t, e.q, rc.ID, tasks.StateRunning, 10*time.Second)
	if st.Attempts != 1 || len(st.History) != 1 {
		t.Errorf("running status %+v; want attempt 1 in the history", st)
	}
	close(release)
	waitState(t, e.q, rc.ID, tasks.StateSucceeded, 10*time.Second)

	// Quick tasks, one after another: each is pending, then succeeded.
	// The status bucket's stream counts the writes.
	statusStream, err := e.q.JetStream().Stream(context.Background(), "KV_"+tasks.StatusBucketName)
	if err != nil {
		t.Fatal(err)
	}
	before, err := statusStream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	for range n {
		rc, err := e.q.Enqueue(context.Background(), tasks.Call{Service: "mail", Function: "quick"})
		if err != nil {
			t.Fatal(err)
		}
		if st := waitState(t, e.q, rc.ID, tasks.StateSucceeded, 10*time.Second); string(st.Result) != `"quick"` || st.Attempts != 1 {
			t.Fatalf("status %+v; want the result after 1 attempt", st)
		}
	}
	after, err := statusStream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The first quick task may be stored before the dispatcher pulls
	// its function (then it is checked, two writes), and an attempt
	// slowed past runningAfter writes "running" too; most write once.
	writes := after.State.LastSeq - before.State.LastSeq
	if writes >= 2*n {
		t.Errorf("%d status writes for %d quick tasks; want fewer than 2 each", writes, n)
	}
	t.Logf("%d status writes for %d quick tasks", writes, n)
}

// TestConsumerDeleted: a function's consumer deleted by hand while the
// dispatcher runs is made again, and the tasks enqueued after it run
// (before, they waited for a restart: Enqueue had made the consumer once,
// and the dispatcher's pull had ended).
func TestConsumerDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	service(t, e.b, "mail", map[string]mesh.Handler{
		"send": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			s.add(c)
			return []byte(`"sent"`), nil
		}),
	})
	rc, err := e.q.Enqueue(context.Background(), tasks.Call{Service: "mail", Function: "send"})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e.q, rc.ID, tasks.StateSucceeded, 10*time.Second)
	stream, err := e.q.JetStream().Stream(context.Background(), tasks.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for n := range stream.ConsumerNames(context.Background()).Name() {
		name = n
	}
	if name == "" {
		t.Fatal("no consumer")
	}
	if err := stream.DeleteConsumer(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		rc, err := e.q.Enqueue(context.Background(), tasks.Call{Service: "mail", Function: "send"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rc.ID)
	}
	for _, id := range ids {
		waitState(t, e.q, id, tasks.StateSucceeded, 20*time.Second)
	}
	if n := s.count(); n != 4 {
		t.Errorf("%d calls; want 4, each task once", n)
	}
	// The consumer made again keeps its state: made at once after the
	// deletion, the broker's removal of the old one's files took the new
	// one's, and writing it failed.
	if _, err := e.q.JetStream().ResumeConsumer(context.Background(), tasks.StreamName, name); err != nil {
		t.Errorf("writing the consumer made again: %v", err)
	}
}

func TestRetryWithBackoff(t *testing.T) {
	t.Parallel()
	backoff := 300 * time.Millisecond
	e := newEnv(t, tasks.Options{Default: tasks.Retry{Backoff: backoff, MaxBackoff: 5 * time.Second}})
	var s seen
	service(t, e.b, "flaky", map[string]mesh.Handler{
		"op": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			s.add(c)
			if s.count() <= 2 {
				return nil, transport.NewError(transport.CodeUnavailable, "not yet")
			}
			return []byte(`"ok"`), nil
		}),
	})
	rc, err := e.q.Enqueue(context.Background(), tasks.Call{Service: "flaky", Function: "op"})
	if err != nil {
		t.Fatal(err)
	}
	st := waitState(t, e.q, rc.ID, tasks.StateSucceeded, 15*time.Second)
	if st.Attempts != 3 || len(st.History) != 3 {
		t.Fatalf("status %+v; want succeeded after 3 attempts with 3 start times", st)
	}
	calls := s.all()
	for i, c := range calls {
		if c.id != rc.ID || c.attempt != string(rune('1'+i)) {
			t.Errorf("call %d: task %s attempt %s; want %s attempt %d", i, c.id, c.attempt, rc.ID, i+1)
		}
	}
	// Backoff: the pause before attempt n+1 is drawn from
	// [backoff·2^(n-1)/2, backoff·2^(n-1)].
	for n := 1; n < 3; n++ {
		gap := st.History[n].Sub(st.History[n-1])
		least := backoff << (n - 1) / 2
		if gap < least {
			t.Errorf("pause before attempt %d: %v; want at least %v", n+1, gap, least)
		}
		t.Logf("pause before attempt %d: %v", n+1, gap)
	}
}

func TestClientErrorDeadLetterReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	var fixed atomic.Bool
	service(t, e.b, "billing", map[string]mesh.Handler{
		"charge": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			s.add(c)
			if !fixed.Load() {
				return nil, transport.NewError(transport.CodeUnprocessable, "card declined")
			}
			return []byte(`"charged"`), nil
		}),
	})
	ctx := withClaims(context.Background(), `{"sub":"u9"}`)
	rc, err := e.q.Enqueue(ctx, tasks.Call{Service: "billing", Function: "charge", Params: []byte(`{"amount":5}`)})
	if err != nil {
		t.Fatal(err)
	}
	st := waitState(t, e.q, rc.ID, tasks.StateFailed, 10*time.Second)
	if st.Attempts != 1 || st.Error == nil || st.Error.Status != 422 || st.Error.Message != "card declined" {
		t.Fatalf("status %+v; want failed at once with the 422", st)
	}
	dls, err := e.q.DeadLetters(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].ID != rc.ID || dls[0].Error.Status != 422 || string(dls[0].Params) != `{"amount":5}` {
		t.Fatalf("dead letters %+v; want the one task with its error and params", dls)
	}
	fixed.Store(true)
	if _, err := e.q.Replay(context.Background(), rc.ID); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, e.q, rc.ID, tasks.StateSucceeded, 10*time.Second)
	if string(st.Result) != `"charged"` {
		t.Errorf("after replay: %+v; want succeeded", st)
	}
	calls := s.all()
	if len(calls) != 2 || calls[1].id != rc.ID || calls[1].claims != `{"sub":"u9"}` {
		t.Errorf("calls %+v; want the replay with the same task ID and claims", calls)
	}
	if dls, _ := e.q.DeadLetters(context.Background(), 0, 100); len(dls) != 0 {
		t.Errorf("dead letters after replay: %+v; want none", dls)
	}
	if _, err := e.q.Replay(context.Background(), rc.ID); transport.CodeOf(err) != transport.CodeNotFound {
		t.Errorf("second replay: %v; want not found", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	service(t, e.b, "orders", map[string]mesh.Handler{
		"place": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) { s.add(c); return nil, nil }),
	})
	ctx := withClaims(context.Background(), `{"sub":"u1"}`)
	call := tasks.Call{Service: "orders", Function: "place", IdempotencyKey: "order-77"}
	a, err := e.q.Enqueue(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.q.Enqueue(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.Duplicate || !b.Duplicate {
		t.Fatalf("receipts %+v, %+v; want the same ID, the second a duplicate", a, b)
	}
	// Another caller's same key is another task.
	c, err := e.q.Enqueue(withClaims(context.Background(), `{"sub":"u2"}`), call)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == a.ID || c.Duplicate {
		t.Fatalf("another caller's key: %+v; want a new task", c)
	}
	waitState(t, e.q, a.ID, tasks.StateSucceeded, 10*time.Second)
	waitState(t, e.q, c.ID, tasks.StateSucceeded, 10*time.Second)
	if n := s.count(); n != 2 {
		t.Errorf("%d executions; want 2 (one per caller)", n)
	}
}

// TestTamperedTaskRefused stores, by hand, a task message whose claims
// were changed after signing: the dispatcher must not run it.
func TestTamperedTaskRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	service(t, e.b, "admin", map[string]mesh.Handler{
		"wipe": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) { s.add(c); return nil, nil }),
	})
	// Capture a real task message: enqueue a delayed one, read it back
	// from its schedule subject, then publish an altered copy as a task.
	ctx := withClaims(context.Background(), `{"sub":"u1","role":"user"}`)
	rc, err := e.q.Enqueue(ctx, tasks.Call{Service: "admin", Function: "wipe", At: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(e.b.Conn())
	str, err := js.Stream(context.Background(), tasks.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := str.GetLastMsgForSubject(context.Background(), "fmsched."+rc.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(h nats.Header) []byte{
		"claims": func(h nats.Header) []byte {
			h.Set("Fm-Claims", `{"sub":"u1","role":"admin"}`)
			return m.Data
		},
		"params": func(h nats.Header) []byte { return []byte(`{"all":true}`) },
		"retry":  func(h nats.Header) []byte { h.Set("Fm-Retry", "99,30000,1000,60000"); return m.Data },
		// The schedule name is who the policy sees as the caller.
		"schedule": func(h nats.Header) []byte { h.Set("Fm-Schedule", "trusted-job"); return m.Data },
	} {
		h := nats.Header{}
		for k, v := range m.Header {
			if !strings.HasPrefix(k, "Nats-") {
				h[k] = append([]string(nil), v...)
			}
		}
		data := change(h)
		if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: "fmtask.admin.wipe." + rc.ID, Header: h, Data: data}); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, e.q, rc.ID, tasks.StateFailed, 10*time.Second)
		if st.Error == nil || st.Error.Code != transport.CodePermissionDenied || !strings.Contains(st.Error.Message, "signature") {
			t.Errorf("%s changed: status %+v; want failed: the signature does not hold", name, st)
		}
		if _, err := e.q.Replay(context.Background(), rc.ID); transport.CodeOf(err) != transport.CodePermissionDenied {
			t.Errorf("%s changed: replay: %v; want refused", name, err)
		}
		// Clear the dead letter and the status for the next case.
		e.purgeDead(t, rc.ID)
	}
	if n := s.count(); n != 0 {
		t.Errorf("the altered task ran %d times; want never", n)
	}
}

func (e *env) purgeDead(t testing.TB, id string) {
	js, _ := jetstream.New(e.b.Conn())
	str, err := js.Stream(context.Background(), tasks.DeadStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := str.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), tasks.StatusBucketName)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func TestDelayedCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	service(t, e.b, "later", map[string]mesh.Handler{
		"run": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) { s.add(c); return nil, nil }),
	})
	at := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	rc, err := e.q.Enqueue(context.Background(), tasks.Call{Service: "later", Function: "run", At: at})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.q.Status(context.Background(), rc.ID)
	if err != nil || st.State != tasks.StatePending || st.Due == nil || !st.Due.Equal(at) {
		t.Fatalf("status of a delayed task: %+v, %v; want pending, due %v", st, err, at)
	}
	waitState(t, e.q, rc.ID, tasks.StateSucceeded, 10*time.Second)
	calls := s.all()
	if len(calls) != 1 || calls[0].at.Before(at) {
		t.Errorf("calls %+v; want one, not before %v", calls, at)
	}
}
