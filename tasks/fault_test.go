package tasks_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/tasktest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tasktest.Cleanup()
	os.Exit(code)
}

// hostOptions are the options taskhost uses, so that the test's Tasks
// (which only enqueues and reads) agrees with the hosts' on the consumers.
func hostOptions(t testing.TB, replicas int) tasks.Options {
	s, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "test", Secret: bytes.Repeat([]byte("t"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	return tasks.Options{Signer: s, Replicas: replicas, AckWait: 2 * time.Second,
		Default: tasks.Retry{Concurrency: 4, Backoff: 200 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, MaxAttempts: 10}}
}

// execLog records every execution of the test function.
type execLog struct {
	mu   sync.Mutex
	runs map[string][]execRun
	n    atomic.Int64
}

type execRun struct {
	attempt int
	start   time.Time
}

func (l *execLog) add(id string, attempt int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runs == nil {
		l.runs = map[string][]execRun{}
	}
	l.runs[id] = append(l.runs[id], execRun{attempt, time.Now()})
	l.n.Add(1)
}

// check verifies that every task ran, and that a task ran more than once
// only after a run that began before the fault (the interrupted attempt),
// with the same task ID and attempt numbers that never go down (a broker
// killed with the host may forget a delivery count it had not yet
// written: then the attempt number repeats).
func (l *execLog) check(t *testing.T, ids []string, fault time.Time) (redelivered int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		runs := l.runs[id]
		if len(runs) == 0 {
			t.Errorf("task %s never ran", id)
			continue
		}
		for i := 1; i < len(runs); i++ {
			if runs[i].attempt < runs[i-1].attempt {
				t.Errorf("task %s: attempt %d after attempt %d; want no lower attempt", id, runs[i].attempt, runs[i-1].attempt)
			}
		}
		if len(runs) > 1 {
			redelivered++
			if !runs[0].start.Before(fault) {
				t.Errorf("task %s ran %d times, the first after the fault; want a second run only for an interrupted attempt", id, len(runs))
			}
		}
	}
	return redelivered
}

func connect(t testing.TB, urls string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// workService runs work.do in the test process: it records the run and
// takes a while, so that a host can die while attempts run.
func workService(t testing.TB, nc *nats.Conn, log *execLog, d time.Duration) {
	t.Helper()
	svc, err := mesh.NewService(nc, "work", mesh.WithMaxConcurrency(1000))
	if err != nil {
		t.Fatal(err)
	}
	err = svc.Handle("do", mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		attempt, _ := strconv.Atoi(c.Header(transport.HeaderTaskAttempt))
		log.add(c.Header(transport.HeaderTaskID), attempt)
		time.Sleep(d) // the function's own work (a slow function)
		return []byte(`"done"`), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The broker may be gone by now (its host killed first).
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = svc.Stop(ctx)
	})
}

func newTasks(t testing.TB, nc *nats.Conn, opts tasks.Options) *tasks.Tasks {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var q *tasks.Tasks
	var err error
	for ctx.Err() == nil {
		tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
		q, err = tasks.New(tctx, nc, opts)
		tcancel()
		if err == nil {
			return q
		}
		time.Sleep(200 * time.Millisecond) // retry interval while the cluster forms
	}
	t.Fatal(err)
	return nil
}

func enqueueN(t testing.TB, q *tasks.Tasks, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		rc, err := q.Enqueue(context.Background(), tasks.Call{Service: "work", Function: "do", Params: []byte(strconv.Itoa(i))})
		if err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		ids[i] = rc.ID
	}
	return ids
}

func waitAll(t *testing.T, q *tasks.Tasks, ids []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	left := append([]string(nil), ids...)
	for len(left) > 0 {
		if time.Now().After(deadline) {
			st, err := q.Status(context.Background(), left[0])
			states := map[string]int{}
			for _, id := range left {
				if st, err := q.Status(context.Background(), id); err != nil {
					states[err.Error()]++
				} else {
					states[string(st.State)]++
				}
			}
			t.Fatalf("%d of %d tasks not succeeded after %v (%v); first: %+v %v", len(left), len(ids), within, states, st, err)
		}
		st, err := q.Status(context.Background(), left[0])
		if err == nil && st.State == tasks.StateSucceeded {
			left = left[1:]
			continue
		}
		if err == nil && st.State == tasks.StateFailed {
			t.Fatalf("task %s failed: %+v", left[0], st.Error)
		}
		time.Sleep(20 * time.Millisecond) // poll interval; the deadline is above
	}
}

// TestKillHostRestart kills (SIGKILL) the host process, which embeds the
// broker (file store) and runs the dispatcher, while attempts run and
// tasks wait; after a restart on the same store every task completes.
func TestKillHostRestart(t *testing.T) {
	t.Parallel()
	addr, store := tasktest.FreeAddr(t), t.TempDir()
	args := []string{"-store", store, "-listen", addr}
	h := tasktest.Start(t, args...)
	nc := connect(t, "nats://"+addr)
	var log execLog
	workService(t, nc, &log, 300*time.Millisecond)
	q := newTasks(t, nc, hostOptions(t, 1))
	ids := enqueueN(t, q, 40)
	eventually(t, 10*time.Second, "attempts running", func() bool { return log.n.Load() >= 4 })
	fault := time.Now()
	h.Kill()
	if log.n.Load() >= int64(len(ids)) {
		t.Fatal("every task ran before the kill; the test proves nothing")
	}
	tasktest.Start(t, args...)
	waitAll(t, q, ids, 30*time.Second)
	re := log.check(t, ids, fault)
	t.Logf("40 tasks, %d executions, %d tasks run again after the kill", log.n.Load(), re)
}

// TestClusterLosesNode runs three hosts, each a node of one cluster with
// JetStream, the task streams at R3; one node is killed under load and
// every task still completes.
func TestClusterLosesNode(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster: not in -short")
	}
	t.Parallel()
	var clients, routes []string
	for range 3 {
		clients = append(clients, tasktest.FreeAddr(t))
		routes = append(routes, "nats://"+tasktest.FreeAddr(t))
	}
	var hosts []*tasktest.Host
	for i := range 3 {
		hosts = append(hosts, tasktest.Launch(t, "-store", t.TempDir(), "-listen", clients[i], "-name", fmt.Sprintf("n%d", i),
			"-cluster", routes[i][len("nats://"):], "-routes", routes[0]+","+routes[1]+","+routes[2], "-replicas", "3"))
	}
	for _, h := range hosts {
		h.Ready(t)
	}
	nc := connect(t, "nats://"+clients[0]+",nats://"+clients[1])
	var log execLog
	workService(t, nc, &log, 20*time.Millisecond)
	q := newTasks(t, nc, hostOptions(t, 3))
	var ids []string
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 300; i++ {
			rc, err := q.Enqueue(context.Background(), tasks.Call{Service: "work", Function: "do"})
			if err != nil {
				// A publish in flight when the node died may fail:
				// the caller is told and can retry; it is not lost
				// silently.
				continue
			}
			mu.Lock()
			ids = append(ids, rc.ID)
			mu.Unlock()
		}
	}()
	eventually(t, 20*time.Second, "tasks running", func() bool { return log.n.Load() >= 50 })
	fault := time.Now()
	hosts[2].Kill()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(ids) < 250 {
		t.Fatalf("only %d of 300 enqueues were acknowledged; want most", len(ids))
	}
	waitAll(t, q, ids, 60*time.Second)
	recovered := time.Since(fault)
	// The attempts running while the cluster elects new leaders can lose
	// their lease (their keep-alives go to the lost node) and run again:
	// allow that for runs begun within AckWait plus an election of the
	// fault.
	re := log.check(t, ids, fault.Add(2*time.Second+10*time.Second))
	t.Logf("%d acknowledged tasks all succeeded %v after losing a node; %d executions, %d run again", len(ids), recovered.Round(time.Millisecond), log.n.Load(), re)
}

// TestTenThousandTasks enqueues 10,000 tasks at once against a slow
// function: all complete, none is lost, the dispatcher's memory stays
// bounded (goroutines by the concurrency, heap by a fixed bound).
func TestTenThousandTasks(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	e := newEnv(t, tasks.Options{Default: tasks.Retry{Concurrency: 64}})
	var log execLog
	workService(t, e.b.Conn(), &log, 2*time.Millisecond)
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	baseG := runtime.NumGoroutine()

	ids := make([]string, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				// As a careful caller does: an enqueue that was not
				// confirmed (a timeout on a loaded machine) is made
				// again with the same idempotency key, and stored once.
				call := tasks.Call{Service: "work", Function: "do", IdempotencyKey: "task-" + strconv.Itoa(i)}
				rc, err := e.q.Enqueue(context.Background(), call)
				for try := 1; err != nil && try < 3; try++ {
					firstErr.CompareAndSwap(nil, err)
					rc, err = e.q.Enqueue(context.Background(), call)
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				ids[i] = rc.ID
			}
		}()
	}
	var peakHeap uint64
	var peakG int
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peakHeap = max(peakHeap, m.HeapInuse)
			peakG = max(peakG, runtime.NumGoroutine())
		}
	}()
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d enqueues failed three times; the first error: %v", failed.Load(), firstErr.Load())
	}
	if err := firstErr.Load(); err != nil {
		t.Logf("some enqueues were made again after: %v", err)
	}
	eventually(t, 120*time.Second, "every task ran", func() bool { return log.n.Load() >= int64(n) })
	close(stop)
	<-sampled
	log.mu.Lock()
	for _, id := range ids {
		if len(log.runs[id]) != 1 {
			t.Errorf("task %s ran %d times; want once", id, len(log.runs[id]))
		}
	}
	log.mu.Unlock()
	// The embedded server shares the heap: the bound covers it too.
	const heapBound = 512 << 20
	if grown := int64(peakHeap) - int64(base.HeapInuse); grown > heapBound {
		t.Errorf("heap grew by %d MiB; want under %d MiB", grown>>20, heapBound>>20)
	}
	t.Logf("%d tasks; heap in use grew by at most %d MiB; goroutines %d -> peak %d", n, (int64(peakHeap)-int64(base.HeapInuse))>>20, baseG, peakG)
	if peakG > baseG+64+200 {
		t.Errorf("peak goroutines %d (from %d); want bounded by the concurrency (64) plus the enqueuers", peakG, baseG)
	}
}
