package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
)

// TestConnectRestart restarts the server a connect-mode Broker uses, on the
// same port: requests during the outage fail at once, the connections come
// back by themselves, requests work again, and nothing leaks. It does not
// run in parallel, so that the goroutine count is its own.
func TestConnectRestart(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := broker.Start(ctx, broker.WithListen("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.ClientURL()
	u, _ := url.Parse(addr)

	var ev events
	var recs records
	b, err := broker.Connect(ctx, []string{addr},
		broker.WithEventHook(ev.hook), broker.WithLogger(slog.New(&recs)))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := b.NewConn("svc")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, svc, "fn.svc.echo", "")
	request(t, b.Conn(), "fn.svc.echo", "before", "before")

	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "disconnected events", func() bool {
		return ev.count(broker.EventDisconnected, "funcmesh") > 0 && ev.count(broker.EventDisconnected, "svc") > 0
	})
	// During the outage a request fails at once: nothing is buffered to
	// be sent (and the function run) after its caller has given up.
	begin := time.Now()
	_, err = b.Conn().Request("fn.svc.echo", []byte("during"), 5*time.Second)
	if !errors.Is(err, nats.ErrReconnectBufExceeded) {
		t.Errorf("request during the outage: %v; want ErrReconnectBufExceeded", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("request during the outage took %v; want it to fail at once", d)
	}
	rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := b.Ready(rctx); err == nil {
		t.Error("Ready during the outage = nil; want an error")
	}
	rcancel()

	// The same port again.
	srv2, err := broker.Start(ctx, broker.WithListen("127.0.0.1:"+u.Port()))
	if err != nil {
		t.Fatalf("restart on port %s: %v", u.Port(), err)
	}
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready after the restart: %v", err)
	}
	waitFor(t, 10*time.Second, "reconnected events", func() bool {
		return ev.count(broker.EventReconnected, "funcmesh") > 0 && ev.count(broker.EventReconnected, "svc") > 0
	})
	// The service's subscription is restored on reconnect; it reaches the
	// server asynchronously, so poll.
	waitFor(t, 10*time.Second, "requests working again", func() bool {
		m, err := b.Conn().Request("fn.svc.echo", []byte("after"), time.Second)
		return err == nil && string(m.Data) == "after"
	})
	if !recs.find(slog.LevelWarn, "broker: connection disconnected") || !recs.find(slog.LevelInfo, "broker: connection reconnected") {
		t.Error("disconnect and reconnect were not logged")
	}

	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var after int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if after = runtime.NumGoroutine(); after <= before {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after shutdown\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
