package reliability_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/natstest"
)

// TestBrokerRestart restarts the external NATS server a connect-mode
// gateway uses, on the same port. During the outage every call fails fast
// with 503; none is buffered and replayed later (the function, which
// counts its runs, never runs for them); calls succeed again within
// seconds of the server's return; and no goroutine leaks. It does not run
// in parallel, so that the goroutine count is its own.
func TestBrokerRestart(t *testing.T) {
	noLeak(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	srv := natstest.Start(t, nil)
	port := srv.Addr().(*net.TCPAddr).Port
	b, err := broker.Connect(ctx, []string{srv.ClientURL()})
	if err != nil {
		t.Fatalf("broker.Connect: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	startEcho(t, srv.ClientURL(), "outage")
	g := newGateway(t, b.Conn(), gatewayConfig{})

	const n = 20
	for i := range n {
		if a := g.post("outage", "echo", fmt.Sprintf(`{"before":%d}`, i)); a.status != 200 {
			t.Fatalf("before the outage: %v", a)
		}
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, 10*time.Second, "the gateway's connection to notice", func() bool {
		return b.Conn().Status() != nats.CONNECTED
	})
	var slowest time.Duration
	for i := range n {
		a := g.post("outage", "echo", fmt.Sprintf(`{"during":%d}`, i))
		slowest = max(slowest, a.dur)
		if a.status != 503 || a.dur > fast(g.timeout) {
			t.Errorf("during the outage: %v; want 503 within %v", a, fast(g.timeout))
		}
		if err := cleanError(a); err != nil {
			t.Error(err)
		}
	}

	t.Logf("during the outage: %d calls answered 503, the slowest in %v", n, slowest)
	natstest.Start(t, &server.Options{Port: port})
	back := time.Now()
	eventually(t, 20*time.Second, "calls to succeed again", func() bool {
		return g.post("outage", "whoami", "{}").status == 200
	})
	t.Logf("calls succeed again %v after the server is back", time.Since(back).Round(time.Millisecond))
	if d := time.Since(back); d > 10*time.Second {
		t.Errorf("calls succeeded again only %v after the server came back; want a few seconds", d)
	}
	for i := range n {
		if a := g.post("outage", "echo", fmt.Sprintf(`{"after":%d}`, i)); a.status != 200 {
			t.Fatalf("after the outage: %v", a)
		}
	}
	// The function ran for the calls before and after, not for the ones
	// made during the outage: nothing was buffered and sent on reconnect.
	if got := counts(t, g, "outage")["echo"]; got != 2*n {
		t.Errorf("echo ran %d times; want %d, for the calls before and after the outage only", got, 2*n)
	}
}
