package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/natstest"
)

func TestStartEmbedded(t *testing.T) {
	t.Parallel()
	b := start(t)
	if b.Server() == nil {
		t.Fatal("Server() = nil; want the embedded server")
	}
	if addr := b.Server().Addr(); addr != nil {
		t.Errorf("Server().Addr() = %v; want no listener by default", addr)
	}
	if got := b.ClientURL(); got != "" {
		t.Errorf("ClientURL() = %q; want empty without WithListen", got)
	}
	if got, want := b.MaxPayload(), int64(broker.DefaultMaxPayload); got != want {
		t.Errorf("MaxPayload() = %d; want %d", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	svc, err := b.NewConn("svc")
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	echo(t, svc, "fn.svc.echo", "echo:")
	request(t, b.Conn(), "fn.svc.echo", "hi", "echo:hi")

	// Publish/subscribe in the other direction.
	sub, err := svc.SubscribeSync("news")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Conn().Publish("news", []byte("x")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "x" {
		t.Fatalf("NextMsg = %v, %v; want x", m, err)
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	b := start(t, broker.WithListen("127.0.0.1:0"))
	url := b.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL() = %q; want nats://127.0.0.1:<bound port>", url)
	}
	// A client in "another process": a plain TCP connection.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("TCP connect to %s: %v", url, err)
	}
	defer nc.Close()
	echo(t, nc, "fn.remote.echo", "tcp:")
	request(t, b.Conn(), "fn.remote.echo", "hi", "tcp:hi")
}

func TestListenAllInterfaces(t *testing.T) {
	t.Parallel()
	b := start(t, broker.WithListen(":0"))
	url := b.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("ClientURL() = %q; want a dialable loopback URL", url)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	nc.Close()
}

func TestConnectMode(t *testing.T) {
	t.Parallel()
	remote := start(t, broker.WithListen("127.0.0.1:0"))
	var ev events
	b := connect(t, []string{remote.ClientURL()}, broker.WithEventHook(ev.hook), broker.WithName("gateway"))
	if b.Server() != nil {
		t.Error("Server() != nil in connect mode")
	}
	if got, want := b.ClientURL(), remote.ClientURL(); got != want {
		t.Errorf("ClientURL() = %q; want %q", got, want)
	}
	if got, want := b.MaxPayload(), int64(broker.DefaultMaxPayload); got != want {
		t.Errorf("MaxPayload() = %d; want %d", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	svc, err := b.NewConn("svc")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, svc, "fn.svc.echo", "connect:")
	request(t, b.Conn(), "fn.svc.echo", "a", "connect:a")
	// And across: a service on the remote broker's own connection.
	echo(t, remote.Conn(), "fn.other.echo", "remote:")
	request(t, b.Conn(), "fn.other.echo", "b", "remote:b")

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !b.Conn().IsClosed() || !svc.IsClosed() {
		t.Error("connections still open after Close")
	}
	waitFor(t, 5*time.Second, "closed events", func() bool {
		return ev.count(broker.EventClosed, "gateway") == 1 && ev.count(broker.EventClosed, "svc") == 1
	})
	if n := ev.count(broker.EventDisconnected, "gateway"); n != 0 {
		t.Errorf("%d disconnected events for a deliberate close; want 0", n)
	}
	if _, err := b.NewConn("late"); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("NewConn after Close: %v; want ErrClosed", err)
	}
	if err := b.Ready(ctx); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Ready after Close: %v; want ErrClosed", err)
	}
}

func TestConnectAuth(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, &server.Options{Username: "u", Password: "p"})
	b := connect(t, []string{s.ClientURL()}, broker.WithUserInfo("u", "p"))
	echo(t, b.Conn(), "x", "")
	c, err := b.NewConn("second") // inherits the credentials
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	request(t, c, "x", "y", "y")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := broker.Connect(ctx, []string{s.ClientURL()}, broker.WithUserInfo("u", "wrong")); err == nil {
		t.Fatal("Connect with a wrong password succeeded")
	}

	ts := natstest.Start(t, &server.Options{Authorization: "tok"})
	tb := connect(t, []string{ts.ClientURL()}, broker.WithToken("tok"))
	echo(t, tb.Conn(), "x", "t")
	request(t, tb.Conn(), "x", "", "t")
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := b.NewConn("svc")
	if err != nil {
		t.Fatal(err)
	}
	// A subscriber that is slow: messages already delivered to it must
	// still be handled before the connection closes.
	var handled atomic.Int32
	if _, err := svc.Subscribe("work", func(*nats.Msg) {
		time.Sleep(20 * time.Millisecond) // the slowness under test
		handled.Add(1)
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := b.Conn().Publish("work", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	// The server has delivered them once svc has flushed after them.
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	callerClosed, err := b.NewConn("caller-closed")
	if err != nil {
		t.Fatal(err)
	}
	callerClosed.Close()

	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := handled.Load(); got != 10 {
		t.Errorf("handled %d messages before the connection closed; want 10", got)
	}
	if b.Server().Running() {
		t.Error("server still running after Shutdown")
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

func TestShutdownBoundedByContext(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := b.NewConn("svc")
	if err != nil {
		t.Fatal(err)
	}
	release, running := make(chan struct{}), make(chan struct{})
	if _, err := svc.Subscribe("stuck", func(*nats.Msg) {
		close(running)
		<-release
	}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Conn().Publish("stuck", nil); err != nil {
		t.Fatal(err)
	}
	<-running
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err = b.Shutdown(ctx)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck handler = %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Shutdown took %v; want about its 200ms deadline", d)
	}
	if !svc.IsClosed() {
		t.Error("stuck connection not closed after the deadline")
	}
	waitFor(t, 5*time.Second, "server stopped", func() bool { return !b.Server().Running() })
}

func TestMaxPayload(t *testing.T) {
	t.Parallel()
	b := start(t, broker.WithMaxPayload(1024))
	if got := b.MaxPayload(); got != 1024 {
		t.Fatalf("MaxPayload() = %d; want 1024", got)
	}
	if got := b.Conn().MaxPayload(); got != 1024 {
		t.Fatalf("Conn().MaxPayload() = %d; want 1024", got)
	}
	if err := b.Conn().Publish("x", make([]byte, 1025)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("Publish of 1025 bytes: %v; want ErrMaxPayload", err)
	}
}

func TestJetStream(t *testing.T) {
	t.Parallel()
	b := start(t, broker.WithJetStream(t.TempDir()))
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("kept")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	st, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("GetMsg = %v, %v; want kept", m, err)
	}
}

func TestLeafNode(t *testing.T) {
	t.Parallel()
	hub := natstest.Start(t, &server.Options{LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT}})
	v, err := hub.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	leafURL := fmt.Sprintf("nats-leaf://127.0.0.1:%d", v.LeafNode.Port)
	b := start(t, broker.WithLeafNodes(broker.LeafRemote{URLs: []string{leafURL}}))
	waitFor(t, 10*time.Second, "leaf connection", func() bool { return b.Server().NumLeafNodes() == 1 })

	central := natstest.Connect(t, hub)
	echo(t, central, "fn.central.echo", "hub:")
	// Interest crosses the leaf connection asynchronously: poll.
	waitFor(t, 10*time.Second, "a reply from the hub", func() bool {
		m, err := b.Conn().Request("fn.central.echo", []byte("x"), time.Second)
		return err == nil && string(m.Data) == "hub:x"
	})
	// And the other way: a service on the leaf answers a client of the hub.
	echo(t, b.Conn(), "fn.local.echo", "leaf:")
	waitFor(t, 10*time.Second, "a reply from the leaf", func() bool {
		m, err := central.Request("fn.local.echo", []byte("y"), time.Second)
		return err == nil && string(m.Data) == "leaf:y"
	})
}

func TestLogger(t *testing.T) {
	t.Parallel()
	var recs records
	b := start(t, broker.WithLogger(slog.New(&recs)))
	waitFor(t, 5*time.Second, "the server's ready log line", func() bool {
		return recs.find(slog.LevelInfo, "Server is ready")
	})
	c, err := b.NewConn("svc")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, 5*time.Second, "the closed event logged", func() bool {
		return recs.find(slog.LevelDebug, "broker: connection closed")
	})
}

func TestNewConnOwnsMany(t *testing.T) {
	t.Parallel()
	b := start(t)
	var conns []*nats.Conn
	for i := range 20 {
		c, err := b.NewConn("c")
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			c.Close() // closed by its user: the Broker forgets it
		} else {
			conns = append(conns, c)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if !c.IsClosed() {
			t.Fatal("an owned connection is open after Close")
		}
	}
}

func TestEventKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[broker.EventKind]string{
		broker.EventDisconnected: "disconnected", broker.EventReconnectFailed: "reconnect_failed",
		broker.EventReconnected: "reconnected", broker.EventLameDuck: "lame_duck",
		broker.EventError: "error", broker.EventClosed: "closed", 0: "unknown", 99: "unknown",
	} {
		if got := k.String(); got != want {
			t.Errorf("EventKind(%d).String() = %q; want %q", int(k), got, want)
		}
	}
}
