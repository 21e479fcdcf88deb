package reliability_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/transport"
)

// The bounce tests: a rogue process holding service alpha's credentials
// tries to publish, by every route, somewhere other than its own nested
// calls and the replies to calls it received. Each route is a test of its
// own; in each, the server refuses the publish or the router drops the
// call, and nothing reaches the target.

// bounceEnv is a broker with per-service credentials and JetStream, a
// host with its gateway and router, a stream holding one message, a
// watcher (as the host) on every subject, and the rogue's connection.
type bounceEnv struct {
	b     *broker.Broker
	g     *gateway
	js    jetstream.JetStream
	rogue *nats.Conn
	errs  *permErrors
	seen  chan *nats.Msg // everything published, as the host saw it
}

func newBounceEnv(t *testing.T) *bounceEnv {
	t.Helper()
	e := &bounceEnv{seen: make(chan *nats.Msg, 1000), errs: &permErrors{}}
	e.b = startBroker(t, broker.WithServiceAuth(broker.ServiceAuth{}), broker.WithJetStream(t.TempDir()))
	e.g = newGateway(t, e.b.Conn(), gatewayConfig{})
	var err error
	if e.js, err = jetstream.New(e.b.Conn()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, "orders.1", []byte(`{"secret":1}`)); err != nil {
		t.Fatal(err)
	}
	watch, err := e.b.NewConn("watch")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Subscribe(">", func(m *nats.Msg) { e.seen <- m }); err != nil {
		t.Fatal(err)
	}
	_ = watch.Flush()
	creds, _ := e.b.ServiceCredentials("alpha")
	if e.rogue, err = nats.Connect(e.b.ClientURL(), creds.Option(), e.errs.option()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.rogue.Close)
	return e
}

// publish publishes as the rogue and waits until the server refused it.
func (e *bounceEnv) publish(t *testing.T, subject, reply string) {
	t.Helper()
	if err := e.rogue.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: []byte(`{"config":{"name":"ORDERS"}}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the server to refuse the publish to "+subject, func() bool { return e.errs.violation(subject) })
}

// route sends a nested call on alpha's own route with reply subject reply
// and waits until the router dropped it.
func (e *bounceEnv) route(t *testing.T, reply string) {
	t.Helper()
	before := e.g.router.Refused()
	if err := e.rogue.PublishMsg(&nats.Msg{Subject: "call.alpha.bravo.echo", Reply: reply, Header: nats.Header{transport.HeaderCaller: {"alpha.f"}}, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the router to drop the call answering to "+reply, func() bool { return e.g.router.Refused() > before })
}

// nothingReached fails if the host saw a message on a subject that
// matches any of targets (a prefix ending in '.' or '>', or exact) other
// than the rogue's own refused attempts.
func (e *bounceEnv) nothingReached(t *testing.T, targets ...string) {
	t.Helper()
	_ = e.b.Conn().Flush()
	for {
		select {
		case m := <-e.seen:
			for _, target := range targets {
				if m.Subject == target || (strings.HasSuffix(target, ">") && strings.HasPrefix(m.Subject, strings.TrimSuffix(target, ">"))) {
					t.Errorf("a message reached %s (reply %q): %q", m.Subject, m.Reply, m.Data)
				}
			}
		default:
			return
		}
	}
}

func (e *bounceEnv) streamIntact(t *testing.T) {
	t.Helper()
	s, err := e.js.Stream(context.Background(), "ORDERS")
	if err != nil {
		t.Fatalf("the stream is gone: %v", err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream state %+v, %v; want its one message", info, err)
	}
}

// TestBounceForgedAnswer: the rogue learns the reply subject of a call in
// flight to bravo (from a spy: the worst case) and answers it, directly
// and through its nested-call route. The caller gets bravo's answer.
func TestBounceForgedAnswer(t *testing.T) {
	t.Parallel()
	e := newBounceEnv(t)
	bravo, _ := e.b.ServiceCredentials("bravo")
	spy, err := nats.Connect(e.b.ClientURL(), bravo.Option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(spy.Close)
	replies, release := make(chan string, 1), make(chan struct{})
	if _, err := spy.QueueSubscribe("fn.bravo.get", "q", func(m *nats.Msg) {
		replies <- m.Reply
		<-release
		_ = m.Respond([]byte(`"genuine"`))
	}); err != nil {
		t.Fatal(err)
	}
	_ = spy.Flush()
	got := make(chan answer, 1)
	go func() { got <- e.g.post("bravo", "get", `{}`) }()
	reply := <-replies
	e.publish(t, reply, "")
	e.route(t, reply)
	close(release)
	if a := <-got; a.status != 200 || string(a.body) != `"genuine"` {
		t.Fatalf("the caller got %v; want bravo's genuine answer", a)
	}
}

// TestBounceJetStream: the rogue tries the JetStream API directly,
// through the route's reply subject, and through the reply subject of an
// answer to its own routed call (a callee it controls answers with a reply
// subject on $JS.API).
func TestBounceJetStream(t *testing.T) {
	t.Parallel()
	e := newBounceEnv(t)
	for _, subj := range []string{"$JS.API.STREAM.DELETE.ORDERS", "$JS.API.STREAM.MSG.GET.ORDERS", "$JS.API.STREAM.PURGE.ORDERS", "$JS.API.INFO"} {
		e.publish(t, subj, transport.InboxPrefix("alpha")+".x")
		e.route(t, subj)
	}
	// The rogue serves as alpha too, and calls itself through the router:
	// its answer carries a reply subject on $JS.API; the router relays the
	// answer without it.
	if _, err := e.rogue.QueueSubscribe("fn.alpha.f", "q", func(m *nats.Msg) {
		_ = e.rogue.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: "$JS.API.STREAM.DELETE.ORDERS", Data: []byte(`"bounce"`)})
	}); err != nil {
		t.Fatal(err)
	}
	_ = e.rogue.Flush()
	m, err := e.rogue.RequestMsg(&nats.Msg{Subject: "call.alpha.alpha.f", Header: nats.Header{transport.HeaderCaller: {"alpha.g"}}}, 5*time.Second)
	if err != nil || string(m.Data) != `"bounce"` {
		t.Fatalf("the self-call: %v, %v", m, err)
	}
	if m.Reply != "" {
		t.Fatalf("the answer reached the rogue with reply subject %q", m.Reply)
	}
	e.errs.mu.Lock()
	e.errs.errs = nil
	e.errs.mu.Unlock()
	e.publish(t, "$JS.API.STREAM.DELETE.ORDERS", "")
	e.nothingReached(t, "$JS.API.>")
	e.streamIntact(t)
}

// TestBounceSystem: the rogue tries the system account's request subjects
// (connections, user info, server stats).
func TestBounceSystem(t *testing.T) {
	t.Parallel()
	e := newBounceEnv(t)
	for _, subj := range []string{"$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.USER.INFO", "$SYS.REQ.SERVER.PING.STATZ", "$SYS.REQ.ACCOUNT.PING.CONNZ"} {
		e.publish(t, subj, transport.InboxPrefix("alpha")+".x")
		e.route(t, subj)
	}
	e.nothingReached(t, "$SYS.>")
}

// TestBounceOtherInbox: the rogue publishes into bravo's inbox, where
// bravo's answers arrive, directly and as the reply subject of its route.
func TestBounceOtherInbox(t *testing.T) {
	t.Parallel()
	e := newBounceEnv(t)
	bravo, _ := e.b.ServiceCredentials("bravo")
	bc, err := nats.Connect(e.b.ClientURL(), bravo.Option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bc.Close)
	var reached atomic.Int64
	if _, err := bc.Subscribe(transport.InboxPrefix("bravo")+".>", func(*nats.Msg) { reached.Add(1) }); err != nil {
		t.Fatal(err)
	}
	_ = bc.Flush()
	for _, subj := range []string{"_INBOX_bravo.x", "_INBOX_bravo.abc.def", "_INBOX.x"} {
		e.publish(t, subj, "")
		e.route(t, subj)
	}
	e.nothingReached(t, "_INBOX_bravo.>", "_INBOX.x")
	if n := reached.Load(); n != 0 {
		t.Fatalf("%d messages reached bravo's inbox", n)
	}
}

// TestBounceFunctions: the rogue publishes a call straight to a function
// (skipping the router and its policy) and on another service's route.
func TestBounceFunctions(t *testing.T) {
	t.Parallel()
	e := newBounceEnv(t)
	for _, subj := range []string{"fn.bravo.echo", "fn.alpha.echo", "call.bravo.alpha.echo", "orders.2"} {
		e.publish(t, subj, transport.InboxPrefix("alpha")+".x")
	}
	e.nothingReached(t, "fn.bravo.echo", "fn.alpha.echo", "call.bravo.alpha.echo", "orders.2")
	e.streamIntact(t)
}
