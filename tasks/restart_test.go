package tasks_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/tasktest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// TestBrokerRestart kills (SIGKILL) an external nats-server (a child
// process, JetStream on a file store) that the host reaches through
// broker.Connect, while attempts run against a slow function, while
// delayed tasks wait for their time and while tasks wait for a service
// that is not running yet; the server comes back on the same port and
// store, and every task completes: none lost, each run once except an
// attempt in flight at the kill (run again with the same task ID), every
// status readable.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	addr, store := tasktest.FreeAddr(t), t.TempDir()
	srv := tasktest.StartServer(t, addr, store)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := broker.Connect(ctx, []string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	opts := hostOptions(t, 1)
	// An attempt cut off by the kill must be retried soon after the
	// restart, not when its timeout runs out: the test waits for less.
	opts.Default.Timeout = time.Minute
	q := newTasks(t, b.Conn(), opts)
	client, err := mesh.NewClient(b.Conn())
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

	// The services have their own connections, as services do.
	var work, later execLog
	workService(t, connect(t, srv.URL), &work, 300*time.Millisecond)

	// Running: more work than the dispatcher's concurrency (4) gets
	// through before the kill.
	running := enqueueN(t, q, 20)
	// Delayed: due while the server is down.
	at := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	var delayed []string
	for i := range 5 {
		rc, err := q.Enqueue(context.Background(), tasks.Call{Service: "work", Function: "do", Params: []byte(strconv.Itoa(100 + i)), At: at})
		if err != nil {
			t.Fatalf("enqueue delayed %d: %v", i, err)
		}
		delayed = append(delayed, rc.ID)
	}
	// Waiting: service "later" runs only after the restart; its tasks are
	// retried (503) until then.
	var waiting []string
	for i := range 5 {
		rc, err := q.Enqueue(context.Background(), tasks.Call{Service: "later", Function: "do", Params: []byte(strconv.Itoa(200 + i)),
			Retry: tasks.Retry{MaxAttempts: 1000}})
		if err != nil {
			t.Fatalf("enqueue waiting %d: %v", i, err)
		}
		waiting = append(waiting, rc.ID)
	}
	eventually(t, 10*time.Second, "attempts running and waiting", func() bool {
		if work.n.Load() < 4 {
			return false
		}
		st, err := q.Status(context.Background(), waiting[0])
		return err == nil && st.Attempts >= 1
	})

	srv.Kill()
	// Runs begun before the server was gone may have been interrupted.
	fault := time.Now()
	if work.n.Load() >= int64(len(running)) {
		t.Fatal("every task ran before the kill; the test proves nothing")
	}
	// Keep the server down until the delayed tasks are due: the server
	// must publish them when it comes back.
	time.Sleep(time.Until(at.Add(100 * time.Millisecond))) // the outage itself: it lasts past the due time
	down := time.Since(fault)
	restarted := time.Now()
	tasktest.StartServer(t, addr, store)
	laterService(t, connect(t, srv.URL), &later)

	all := append(append(append([]string(nil), running...), delayed...), waiting...)
	waitAll(t, q, all, 20*time.Second)
	recovered := time.Since(restarted)

	// A run begun before the restart had its request before the kill
	// (none can reach a service while the server is down): it may have
	// been interrupted, and run again. Every other task runs once: a
	// delivery the host had taken but not started at the kill is
	// dropped, not run beside the broker's redelivery of it.
	re := work.check(t, running, restarted)
	work.check(t, delayed, restarted)
	later.check(t, waiting, restarted)
	// Tasks that never ran before the kill run exactly once.
	work.mu.Lock()
	for _, id := range delayed {
		if n := len(work.runs[id]); n != 1 {
			t.Errorf("delayed task %s ran %d times; want once", id, n)
		}
		if r := work.runs[id]; len(r) > 0 && r[0].start.Before(at) {
			t.Errorf("delayed task %s ran at %v, before its time %v", id, r[0].start, at)
		}
	}
	work.mu.Unlock()
	later.mu.Lock()
	for _, id := range waiting {
		if n := len(later.runs[id]); n != 1 {
			t.Errorf("waiting task %s ran %d times; want once", id, n)
		}
	}
	later.mu.Unlock()
	for _, id := range all {
		st, err := q.Status(context.Background(), id)
		if err != nil {
			t.Errorf("status of %s after the restart: %v", id, err)
			continue
		}
		if st.State != tasks.StateSucceeded || string(st.Result) != `"done"` {
			t.Errorf("status of %s: %s %s; want succeeded \"done\"", id, st.State, st.Result)
		}
	}
	t.Logf("%d tasks; server down %v; all succeeded %v after the restart; %d executions of work, %d of later; %d run again (interrupted)",
		len(all), down.Round(time.Millisecond), recovered.Round(time.Millisecond), work.n.Load(), later.n.Load(), re)
}

// laterService runs later.do in the test process.
func laterService(t testing.TB, nc *nats.Conn, log *execLog) {
	t.Helper()
	svc, err := mesh.NewService(nc, "later")
	if err != nil {
		t.Fatal(err)
	}
	err = svc.Handle("do", mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		attempt, _ := strconv.Atoi(c.Header(transport.HeaderTaskAttempt))
		log.add(c.Header(transport.HeaderTaskID), attempt)
		return []byte(`"done"`), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = svc.Stop(ctx)
	})
}
