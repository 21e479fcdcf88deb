package schedules_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

type ticks struct {
	mu   sync.Mutex
	runs []tickRun
}

type tickRun struct {
	id, params, claims, caller string
	at                         time.Time
}

func (k *ticks) add(c *mesh.Call) {
	k.mu.Lock()
	defer k.mu.Unlock()
	claims, _ := c.ClaimsJSON()
	k.runs = append(k.runs, tickRun{id: c.Header(transport.HeaderTaskID), params: string(c.Params()), claims: string(claims), at: time.Now()})
}

func (k *ticks) all() []tickRun {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]tickRun(nil), k.runs...)
}

type env struct {
	b  *broker.Broker
	q  *tasks.Tasks
	sc *schedules.Schedules
}

func setup(t *testing.T, opts tasks.Options) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.WithJetStream(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	opts.Signer, err = transport.NewClaimsSigner(transport.ClaimsKey{ID: "k", Secret: bytes.Repeat([]byte("s"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tasks.New(ctx, b.Conn(), opts)
	if err != nil {
		t.Fatal(err)
	}
	client, _ := mesh.NewClient(b.Conn())
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	sc, err := schedules.New(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	return &env{b: b, q: q, sc: sc}
}

func runFn(t *testing.T, b *broker.Broker, svc, fn string, h mesh.HandlerFunc) {
	t.Helper()
	nc, err := b.NewConn(svc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesh.NewService(nc, svc)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(fn, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval; the deadline is above
	}
}

// TestEverySecond: "@every 1s" over about 4 seconds fires 3 to 5 times,
// each tick a task of its own with the configured claims.
func TestEverySecond(t *testing.T) {
	t.Parallel()
	e := setup(t, tasks.Options{})
	var k ticks
	runFn(t, e.b, "jobs", "report", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		k.add(c)
		return nil, nil
	})
	start := time.Now()
	err := e.sc.Put(context.Background(), schedules.Schedule{Name: "report", Spec: "@every 1s", Service: "jobs", Function: "report",
		Params: []byte(`{"kind":"daily"}`), Claims: []byte(`{"sub":"scheduler","role":"system"}`)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // the thing measured is the count over a span
	runs := k.all()
	elapsed := time.Since(start)
	if n := len(runs); n < 3 || n > 5 {
		t.Errorf("%d ticks in %v; want 3 to 5", n, elapsed)
	}
	ids := map[string]bool{}
	for _, r := range runs {
		if ids[r.id] || !tasks.ValidID(r.id) {
			t.Errorf("tick task ID %q repeated or malformed", r.id)
		}
		ids[r.id] = true
		if r.params != `{"kind":"daily"}` || r.claims != `{"sub":"scheduler","role":"system"}` {
			t.Errorf("tick saw params %s claims %s; want the schedule's", r.params, r.claims)
		}
	}
	list, err := e.sc.List(context.Background())
	if err != nil || len(list) != 1 || list[0].Name != "report" || list[0].Next.Before(time.Now().Add(-time.Second)) || list[0].Last == nil {
		t.Errorf("List: %+v, %v; want report with its next time and last tick", list, err)
	}
}

// TestDeleteAndReplace: a deleted schedule never fires again; a replaced
// one fires on its new spec only.
func TestDeleteAndReplace(t *testing.T) {
	t.Parallel()
	e := setup(t, tasks.Options{})
	var k ticks
	runFn(t, e.b, "jobs", "tick", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		k.add(c)
		return nil, nil
	})
	ctx := context.Background()
	put := func(name, spec, params string) {
		t.Helper()
		if err := e.sc.Put(ctx, schedules.Schedule{Name: name, Spec: spec, Service: "jobs", Function: "tick", Params: []byte(params)}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "@every 1s", `"a1"`)
	put("b", "@every 1s", `"b"`)
	count := func(p string) (n int) {
		for _, r := range k.all() {
			if r.params == p {
				n++
			}
		}
		return n
	}
	eventually(t, 10*time.Second, "both schedules fired", func() bool { return count(`"a1"`) >= 1 && count(`"b"`) >= 1 })
	if err := e.sc.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	put("a", "@every 1h", `"a2"`) // replaced: far in the future
	// A tick published before the change may still be running: let it.
	time.Sleep(1500 * time.Millisecond) // a tick in flight finishes; what follows samples absence
	b0, a0 := count(`"b"`), count(`"a1"`)
	time.Sleep(2500 * time.Millisecond) // over two periods of the old specs
	if n := count(`"b"`); n != b0 {
		t.Errorf("deleted schedule fired %d more times; want none", n-b0)
	}
	if n := count(`"a1"`); n != a0 {
		t.Errorf("the replaced spec fired %d more times; want none", n-a0)
	}
	if n := count(`"a2"`); n != 0 {
		t.Errorf("the new hourly spec fired %d times within seconds; want 0", n)
	}
	list, _ := e.sc.List(ctx)
	if len(list) != 1 || list[0].Spec != "@every 1h" || string(list[0].Params) != `"a2"` {
		t.Errorf("List after delete and replace: %+v; want only a, hourly", list)
	}
}

// TestFailingTick: a tick whose call fails follows the retry and
// dead-letter path of package tasks.
func TestFailingTick(t *testing.T) {
	t.Parallel()
	e := setup(t, tasks.Options{Default: tasks.Retry{MaxAttempts: 2, Backoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	var k ticks
	runFn(t, e.b, "jobs", "broken", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		k.add(c)
		return nil, transport.NewError(transport.CodeUnavailable, "down")
	})
	if err := e.sc.Put(context.Background(), schedules.Schedule{Name: "broken", Spec: "@every 1h", Service: "jobs", Function: "broken"}); err != nil {
		t.Fatal(err)
	}
	// @every first fires one period after it is stored: use a spec that
	// fires now instead.
	if err := e.sc.Put(context.Background(), schedules.Schedule{Name: "broken", Spec: "* * * * * *", Service: "jobs", Function: "broken"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a dead letter", func() bool {
		dls, _ := e.q.DeadLetters(context.Background(), 0, 10)
		return len(dls) >= 1
	})
	_ = e.sc.Delete(context.Background(), "broken")
	dls, _ := e.q.DeadLetters(context.Background(), 0, 10)
	if dls[0].Service != "jobs" || dls[0].Attempts != 2 || dls[0].Error.Status != 503 {
		t.Errorf("dead letter %+v; want jobs.broken after 2 attempts with the 503", dls[0])
	}
	st, err := e.q.Status(context.Background(), dls[0].ID)
	if err != nil || st.State != tasks.StateFailed || st.Attempts != 2 {
		t.Errorf("status of the failed tick: %+v %v; want failed after 2 attempts", st, err)
	}
	attempts := map[string]int{}
	for _, r := range k.all() {
		attempts[r.id]++
	}
	if attempts[dls[0].ID] != 2 {
		t.Errorf("the failed tick ran %d times; want 2", attempts[dls[0].ID])
	}
}

// TestPolicyDeniesTick: the policy (tasks.Options.Authorize) sees each
// tick with the schedule's claims and the caller schedule.<name>, and a
// denial fails it without a call.
func TestPolicyDeniesTick(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	authorize := func(ctx context.Context, service, function string, params []byte) error {
		c, _ := reqctx.Caller(ctx)
		claims, _ := reqctx.ClaimsJSON(ctx)
		mu.Lock()
		seen = append(seen, c.String()+" "+string(claims))
		mu.Unlock()
		if function == "wipe" {
			return transport.NewError(transport.CodePermissionDenied, "schedules may not wipe")
		}
		return nil
	}
	e := setup(t, tasks.Options{Authorize: authorize})
	var k ticks
	runFn(t, e.b, "admin", "wipe", func(ctx context.Context, c *mesh.Call) ([]byte, error) { k.add(c); return nil, nil })
	if err := e.sc.Put(context.Background(), schedules.Schedule{Name: "nightly-wipe", Spec: "* * * * * *", Service: "admin", Function: "wipe",
		Claims: []byte(`{"sub":"ops"}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a denied tick", func() bool {
		dls, _ := e.q.DeadLetters(context.Background(), 0, 10)
		return len(dls) >= 1 && dls[0].Error.Code == transport.CodePermissionDenied
	})
	_ = e.sc.Delete(context.Background(), "nightly-wipe")
	if n := len(k.all()); n != 0 {
		t.Errorf("the denied function ran %d times; want never", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0] != `schedule.nightly-wipe {"sub":"ops"}` {
		t.Errorf("the policy saw %q; want caller schedule.nightly-wipe with the claims", seen)
	}
}

func TestFile(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ file, field string }{
		"bad cron":      {`{"schedules":[{"name":"x","spec":"0 0 25 * * *","service":"s","function":"f"}]}`, "spec.hours"},
		"bad zone":      {`{"schedules":[{"name":"x","spec":"0 0 1 * * *","time_zone":"Nowhere/Land","service":"s","function":"f"}]}`, "time_zone"},
		"short every":   {`{"schedules":[{"name":"x","spec":"@every 100ms","service":"s","function":"f"}]}`, "spec"},
		"bad name":      {`{"schedules":[{"name":"a.b","spec":"@hourly","service":"s","function":"f"}]}`, "name"},
		"bad overlap":   {`{"schedules":[{"name":"x","spec":"@hourly","service":"s","function":"f","overlap":"queue"}]}`, "overlap"},
		"unknown field": {`{"schedules":[{"name":"x","spec":"@hourly","service":"s","function":"f","every":"1s"}]}`, ""},
	} {
		_, err := schedules.ParseFile([]byte(tc.file))
		var fe *schedules.FieldError
		if err == nil || tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
			t.Errorf("%s: %v; want an error naming %q", name, err, tc.field)
		}
	}
	e := setup(t, tasks.Options{})
	dir := t.TempDir()
	path := filepath.Join(dir, "schedules.json")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	write(`{"schedules":[{"name":"a","spec":"@hourly","service":"s","function":"f"},{"name":"b","spec":"0 30 9 * * mon-fri","time_zone":"Europe/Paris","service":"s","function":"f"}]}`)
	if err := e.sc.LoadFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	write(`{"schedules":[{"name":"b","spec":"@daily","service":"s","function":"f"}]}`)
	if err := e.sc.LoadFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	list, err := e.sc.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "b" || list[0].Spec != "@daily" {
		t.Fatalf("after the second load: %+v %v; want only b, daily", list, err)
	}
}

// TestOverlapSkip: with overlap "skip", a tick due while the previous run
// goes on is skipped, so runs never overlap.
func TestOverlapSkip(t *testing.T) {
	t.Parallel()
	e := setup(t, tasks.Options{Default: tasks.Retry{Timeout: 10 * time.Second}})
	var running, maxRunning, runs atomicInt
	runFn(t, e.b, "jobs", "slow", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		n := running.add(1)
		maxRunning.max(n)
		runs.add(1)
		time.Sleep(2500 * time.Millisecond) // the slow job itself: longer than two periods
		running.add(-1)
		return nil, nil
	})
	if err := e.sc.Put(context.Background(), schedules.Schedule{Name: "slow", Spec: "* * * * * *", Service: "jobs", Function: "slow", Overlap: "skip"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // ticks every second against a 2.5 s run
	_ = e.sc.Delete(context.Background(), "slow")
	if m := maxRunning.get(); m != 1 {
		t.Errorf("%d runs at once; want 1 (overlap skip)", m)
	}
	if n := runs.get(); n < 1 || n > 3 {
		t.Errorf("%d runs in 5 s of ticks every second, each 2.5 s; want 1 to 3", n)
	}
}

type atomicInt struct {
	mu sync.Mutex
	n  int
}

func (a *atomicInt) add(d int) int { a.mu.Lock(); defer a.mu.Unlock(); a.n += d; return a.n }
func (a *atomicInt) get() int      { a.mu.Lock(); defer a.mu.Unlock(); return a.n }
func (a *atomicInt) max(v int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if v > a.n {
		a.n = v
	}
}
