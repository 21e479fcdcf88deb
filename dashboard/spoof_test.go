package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/dashboard"
	"github.com/funcmesh/funcmesh/mesh"
)

// TestStatsSpoofed: with per-service credentials, a rogue service answers
// the generic $SRV.STATS request with made-up stats for alpha's instance
// (its name and ID, a million calls), twice, so that one answer comes
// after alpha's own; it cannot subscribe to alpha's own $SRV.STATS.alpha.
// The dashboard shows alpha's real counts in every snapshot.
func TestStatsSpoofed(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(t.Context(), broker.WithServiceAuth(broker.ServiceAuth{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	conn := func(name string, opts ...nats.Option) *nats.Conn {
		creds, err := b.ServiceCredentials(name)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := b.NewConn(name, append(opts, creds.Option())...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	alpha, err := mesh.NewService(conn("alpha"), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = alpha.Stop(context.Background()) })
	if err := alpha.Handle("ok", mesh.Func(func(context.Context, struct{}) (string, error) { return "fine", nil })); err != nil {
		t.Fatal(err)
	}
	c, err := mesh.NewClient(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Invoke(t.Context(), "alpha", "ok", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu      sync.Mutex
		refused bool
	)
	rogue := conn("rogue", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "$SRV.STATS.alpha") {
			mu.Lock()
			refused = true
			mu.Unlock()
		}
	}))
	data, _ := json.Marshal(mesh.EndpointStats{Calls: 1_000_000, ProcessingTime: time.Hour})
	fake, _ := json.Marshal(micro.Stats{
		ServiceIdentity: micro.ServiceIdentity{Name: "alpha", ID: alpha.ID(), Version: "6.6.6"},
		Type:            micro.StatsResponseType,
		Endpoints: []*micro.EndpointStats{{
			Name: "ok", Subject: "fn.alpha.ok", NumRequests: 1_000_000, Data: data,
		}},
	})
	answer := func(m *nats.Msg) {
		_ = m.Respond(fake)
		// Again a little later, to come after alpha's own answer: part
		// of the attack, not a wait.
		time.AfterFunc(30*time.Millisecond, func() { _ = m.Respond(fake) })
	}
	for _, subject := range []string{"$SRV.STATS", "$SRV.STATS.alpha"} {
		if _, err := rogue.Subscribe(subject, answer); err != nil {
			t.Fatal(err)
		}
	}
	if err := rogue.Flush(); err != nil {
		t.Fatal(err)
	}

	d := newDashboard(t, b.Conn(), -1)
	for i := range 5 {
		s := poll(t, d, func(s *dashboard.Snapshot) bool {
			svc := service(s, "alpha")
			return svc != nil && function(svc, "ok") != nil && function(svc, "ok").Calls > 0
		})
		if f := function(service(s, "alpha"), "ok"); f.Calls != 3 || f.AvgLatency > time.Minute {
			t.Fatalf("snapshot %d: alpha.ok shows %d calls, average latency %v; want alpha's own 3", i, f.Calls, f.AvgLatency)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !refused {
		t.Error("the rogue's subscription to $SRV.STATS.alpha was not refused")
	}
}
