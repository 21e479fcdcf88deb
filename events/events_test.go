package events_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/events"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

type recorder struct {
	mu    sync.Mutex
	calls map[string][]*recorded
}

type recorded struct {
	taskID, attempt, ceType, ceID, claims, data string
}

func (r *recorder) add(fn string, c *mesh.Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string][]*recorded{}
	}
	claims, _ := c.ClaimsJSON()
	r.calls[fn] = append(r.calls[fn], &recorded{
		taskID: c.Header(transport.HeaderTaskID), attempt: c.Header(transport.HeaderTaskAttempt),
		ceType: c.Header(events.HeaderType), ceID: c.Header(events.HeaderID),
		claims: string(claims), data: string(c.Params()),
	})
}

func (r *recorder) get(fn string) []*recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recorded(nil), r.calls[fn]...)
}

type env struct {
	b  *broker.Broker
	q  *tasks.Tasks
	ev *events.Events
}

func setup(t testing.TB, triggers []events.Trigger) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.WithJetStream(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k", Secret: bytes.Repeat([]byte("e"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tasks.New(ctx, b.Conn(), tasks.Options{Signer: signer, Default: tasks.Retry{Backoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	client, _ := mesh.NewClient(b.Conn())
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	ev, err := events.New(ctx, q, events.Options{Signer: signer, Triggers: triggers})
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Stop)
	return &env{b: b, q: q, ev: ev}
}

func runService(t *testing.T, b *broker.Broker, name string, fns map[string]mesh.HandlerFunc) {
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
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
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

// TestThreeTriggersOneFailing: one event, three triggers; two succeed
// once each, the third retries and lands in the dead letters.
func TestThreeTriggersOneFailing(t *testing.T) {
	t.Parallel()
	var rec recorder
	e := setup(t, []events.Trigger{
		{Name: "welcome", Types: []string{"signup"}, Service: "mail", Function: "welcome"},
		{Name: "crm", Types: []string{"signup", "login"}, Service: "crm", Function: "add"},
		{Name: "audit", Types: []string{"*"}, Service: "audit", Function: "log", Retry: tasks.Retry{MaxAttempts: 3}},
	})
	runService(t, e.b, "mail", map[string]mesh.HandlerFunc{"welcome": func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		rec.add("welcome", c)
		return nil, nil
	}})
	runService(t, e.b, "crm", map[string]mesh.HandlerFunc{"add": func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		rec.add("crm", c)
		return nil, nil
	}})
	runService(t, e.b, "audit", map[string]mesh.HandlerFunc{"log": func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		rec.add("audit", c)
		return nil, transport.NewError(transport.CodeInternal, "audit store down")
	}})
	claims := `{"sub":"u1"}`
	c, _ := transport.DecodeClaims(claims)
	ctx := reqctx.WithClaims(context.Background(), c, []byte(claims))
	id, err := e.ev.Emit(ctx, events.Event{Type: "signup", Data: []byte(`{"email":"a@b"}`)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the failing trigger's task in the dead letters", func() bool {
		dls, _ := e.q.DeadLetters(context.Background(), 0, 10)
		return len(dls) == 1
	})
	dls, _ := e.q.DeadLetters(context.Background(), 0, 10)
	if dls[0].Service != "audit" || dls[0].Attempts != 3 || dls[0].Error.Status != 500 {
		t.Errorf("dead letter %+v; want audit.log after 3 attempts with the 500", dls[0])
	}
	eventually(t, 10*time.Second, "both working triggers ran", func() bool {
		return len(rec.get("welcome")) == 1 && len(rec.get("crm")) == 1
	})
	for _, fn := range []string{"welcome", "crm", "audit"} {
		for _, r := range rec.get(fn) {
			if r.ceType != "signup" || r.ceID != id || r.claims != claims || r.data != `{"email":"a@b"}` {
				t.Errorf("%s saw %+v; want the signup event %s with the emitter's claims and data", fn, r, id)
			}
		}
	}
	if n := len(rec.get("audit")); n != 3 {
		t.Errorf("failing trigger ran %d times; want 3", n)
	}
	// Nothing more arrives later: once each.
	time.Sleep(300 * time.Millisecond) // sampling the absence of a second run, not waiting for one
	if len(rec.get("welcome")) != 1 || len(rec.get("crm")) != 1 {
		t.Errorf("welcome %d, crm %d runs; want 1 each", len(rec.get("welcome")), len(rec.get("crm")))
	}
}

// setupWelcome runs one trigger, welcome (type signup → mail.welcome),
// and a mail service that records its calls in rec.
func setupWelcome(t *testing.T, rec *recorder) *env {
	t.Helper()
	e := setup(t, []events.Trigger{{Name: "welcome", Types: []string{"signup"}, Service: "mail", Function: "welcome"}})
	runService(t, e.b, "mail", map[string]mesh.HandlerFunc{"welcome": func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		rec.add("welcome", c)
		return nil, nil
	}})
	return e
}

// TestForgedEventFiresNothing publishes an event by hand with claims the
// host never signed.
func TestForgedEventFiresNothing(t *testing.T) {
	t.Parallel()
	var rec recorder
	e := setupWelcome(t, &rec)
	js, _ := jetstream.New(e.b.Conn())
	h := nats.Header{}
	h.Set(events.HeaderID, "forged-1")
	h.Set(events.HeaderType, "signup")
	h.Set("Fm-Claims", `{"sub":"admin"}`)
	h.Set("Fm-Expires", "99999999999999")
	h.Set("Fm-Claims-Sig", "v1.k.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: "fmevent.signup", Header: h, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// A genuine event after it shows the trigger ran past the forgery.
	if _, err := e.ev.Emit(context.Background(), events.Event{Type: "signup", ID: "real-1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the genuine event", func() bool { return len(rec.get("welcome")) >= 1 })
	time.Sleep(200 * time.Millisecond) // sampling: a forged event that slipped through would run by now
	for _, r := range rec.get("welcome") {
		if r.ceID != "real-1" {
			t.Errorf("the trigger ran for %+v; want only the genuine event", r)
		}
	}
}

func TestDelayedEvent(t *testing.T) {
	t.Parallel()
	var rec recorder
	e := setup(t, []events.Trigger{{Name: "remind", Types: []string{"reminder"}, Service: "mail", Function: "remind"}})
	var at time.Time
	var got time.Time
	var mu sync.Mutex
	runService(t, e.b, "mail", map[string]mesh.HandlerFunc{"remind": func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		mu.Lock()
		got = time.Now()
		mu.Unlock()
		rec.add("remind", c)
		return nil, nil
	}})
	at = time.Now().Add(2 * time.Second).Truncate(time.Second)
	if _, err := e.ev.Emit(context.Background(), events.Event{Type: "reminder", At: at}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the delayed event's trigger", func() bool { return len(rec.get("remind")) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if got.Before(at) {
		t.Errorf("ran at %v; want not before %v", got, at)
	}
}

// TestTriggerConsumerDeleted deletes a trigger's consumer while the
// triggers run, as an operator might by hand: the trigger makes it again,
// and the events stored but not yet delivered still reach the function,
// once each.
func TestTriggerConsumerDeleted(t *testing.T) {
	t.Parallel()
	var rec recorder
	e := setupWelcome(t, &rec)
	if _, err := e.ev.Emit(context.Background(), events.Event{Type: "signup", ID: "before"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the event before the deletion", func() bool { return len(rec.get("welcome")) == 1 })
	js, err := jetstream.New(e.b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	// Paused, the consumer delivers nothing: the events emitted now are
	// stored and not delivered when it is deleted (its info says 2
	// pending). The consumer made again starts after the last event
	// finished, so none is lost; made again at new events only, it loses
	// them.
	if _, err := js.PauseConsumer(context.Background(), events.StreamName, "tr_welcome", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"after-1", "after-2"} {
		if _, err := e.ev.Emit(context.Background(), events.Event{Type: "signup", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := js.DeleteConsumer(context.Background(), events.StreamName, "tr_welcome"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the events after the deletion", func() bool { return len(rec.get("welcome")) >= 3 })
	seen := map[string]int{}
	for _, r := range rec.get("welcome") {
		seen[r.ceID]++
	}
	for _, id := range []string{"before", "after-1", "after-2"} {
		if seen[id] != 1 {
			t.Errorf("event %s ran %d times; want once (all: %v)", id, seen[id], seen)
		}
	}
}
