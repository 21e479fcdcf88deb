package schedules_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/tasktest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tasktest.Cleanup()
	os.Exit(code)
}

// hostTasks makes a Tasks with taskhost's options on nc.
func hostTasks(t *testing.T, nc *nats.Conn) *tasks.Tasks {
	t.Helper()
	s, _ := transport.NewClaimsSigner(transport.ClaimsKey{ID: "test", Secret: bytes.Repeat([]byte("t"), 32)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
		q, err := tasks.New(tctx, nc, tasks.Options{Signer: s, AckWait: 2 * time.Second,
			Default: tasks.Retry{Concurrency: 4, Backoff: 200 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, MaxAttempts: 10}})
		tcancel()
		if err == nil {
			return q
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
}

func tickService(t *testing.T, nc *nats.Conn, k *ticks) {
	t.Helper()
	svc, err := mesh.NewService(nc, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle("tick", mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		k.add(c)
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = svc.Stop(ctx)
	})
}

// TestThreeHostsTickOnce: three host processes, each running a
// dispatcher, on one broker: every tick runs exactly once.
func TestThreeHostsTickOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.WithJetStream(t.TempDir()), broker.WithListen("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	q := hostTasks(t, b.Conn())
	for range 3 {
		tasktest.Launch(t, "-connect", b.ClientURL())
	}
	var k ticks
	tickService(t, b.Conn(), &k)
	sc, err := schedules.New(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Put(ctx, schedules.Schedule{Name: "every", Spec: "@every 1s", Service: "jobs", Function: "tick"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // the count over a span is what is measured
	_ = sc.Delete(ctx, "every")
	runs := k.all()
	seen := map[string]int{}
	for _, r := range runs {
		seen[r.id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("tick %s ran %d times; want once", id, n)
		}
	}
	if n := len(seen); n < 3 || n > 6 {
		t.Errorf("%d ticks in 5s with three hosts; want 3 to 6 (once per second)", n)
	}
}

// TestKillHostScheduleGoesOn kills the host (embedded broker, file store)
// with SIGKILL and restarts it: the schedule fires on.
func TestKillHostScheduleGoesOn(t *testing.T) {
	t.Parallel()
	addr, store := tasktest.FreeAddr(t), t.TempDir()
	args := []string{"-store", store, "-listen", addr}
	h := tasktest.Start(t, args...)
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var k ticks
	tickService(t, nc, &k)
	q := hostTasks(t, nc)
	sc, err := schedules.New(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Put(context.Background(), schedules.Schedule{Name: "beat", Spec: "@every 1s", Service: "jobs", Function: "tick"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two ticks", func() bool { return len(k.all()) >= 2 })
	h.Kill()
	killed := time.Now()
	before := len(k.all())
	tasktest.Start(t, args...)
	eventually(t, 15*time.Second, "two ticks after the restart", func() bool {
		n := 0
		for _, r := range k.all() {
			if r.at.After(killed) {
				n++
			}
		}
		return n >= 2
	})
	t.Logf("%d ticks before the kill, %d in all", before, len(k.all()))
}
