package reliability_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
)

// permErrors collects a connection's asynchronous errors.
type permErrors struct {
	mu   sync.Mutex
	errs []error
}

func (p *permErrors) option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		p.mu.Lock()
		p.errs = append(p.errs, err)
		p.mu.Unlock()
	})
}

// violation reports whether the server refused something on subject.
func (p *permErrors) violation(subject string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.errs {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// TestRogueService runs the broker with per-service credentials, service
// alpha and service bravo in their own processes, and a rogue holding
// alpha's credentials: a process that registers as bravo, and a
// connection that tries every way to read bravo's calls or answer them.
// Through the gateway, callers of bravo only ever get bravo's answers.
func TestRogueService(t *testing.T) {
	t.Parallel()
	b := startBroker(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	alpha, _ := b.ServiceCredentials("alpha")
	bravo, _ := b.ServiceCredentials("bravo")
	startEcho(t, withCreds(t, b.ClientURL(), alpha), "alpha")
	pb := startEcho(t, withCreds(t, b.ClientURL(), bravo), "bravo")
	g := newGateway(t, b.Conn(), gatewayConfig{})
	// The gateway reaches both (it has the host's identity).
	for _, svc := range []string{"alpha", "bravo"} {
		if a := g.post(svc, "echo", `{"hi":1}`); a.status != 200 {
			t.Fatalf("%s: %v", svc, a)
		}
	}

	// A process with alpha's credentials cannot serve as bravo: the
	// broker refuses its subscriptions, and mesh.NewService reports the
	// refusal instead of starting a service that never gets a call.
	impConn, err := nats.Connect(b.ClientURL(), alpha.Option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(impConn.Close)
	if _, err := mesh.NewService(impConn, "bravo"); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("mesh.NewService(bravo) with alpha's credentials: %v; want a permissions violation", err)
	}
	// An impostor that bypasses the mesh and registers bravo's endpoints
	// with micro directly starts, but the broker never delivers to it.
	impostorCalls := make(chan string, 100)
	impostor, err := micro.AddService(impConn, micro.Config{Name: "bravo", Version: "6.6.6", QueueGroup: "q"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = impostor.Stop() })
	for _, fn := range []string{"echo", "whoami", "sleep"} {
		err := impostor.AddEndpoint(fn, micro.HandlerFunc(func(r micro.Request) {
			impostorCalls <- r.Subject()
			_ = r.Respond([]byte(`{"impostor":true}`))
		}), micro.WithEndpointSubject("fn.bravo."+fn))
		if err != nil {
			t.Fatal(err)
		}
	}

	// A connection with alpha's credentials that tries to subscribe to
	// bravo's calls and to every reply.
	var perr permErrors
	rogue, err := nats.Connect(b.ClientURL(), alpha.Option(), perr.option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rogue.Close)
	stolen := make(chan string, 100)
	for _, s := range []struct{ subject, queue string }{
		{"fn.bravo.>", "q"}, {"fn.bravo.whoami", "q"}, {"fn.bravo.whoami", ""}, {"fn.*.whoami", "q"},
		{"fn.>", ""}, {">", ""}, {"_INBOX.>", ""}, {"$SRV.>", ""},
	} {
		if _, err := rogue.QueueSubscribe(s.subject, s.queue, func(m *nats.Msg) { stolen <- m.Subject }); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the server to refuse "+s.subject, func() bool { return perr.violation(s.subject) })
	}
	// Nor may it call bravo itself.
	if err := rogue.PublishRequest("fn.bravo.echo", "_INBOX_alpha.x", []byte(`{"rogue":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the server to refuse the rogue's call", func() bool { return perr.violation("fn.bravo.echo") })

	// Every call to bravo is answered by bravo.
	for i := range 50 {
		w := decodeWho(t, g.post("bravo", "whoami", "{}"))
		if w.PID != pb.Cmd.Process.Pid {
			t.Fatalf("call %d to bravo answered by pid %d; want bravo's %d", i, w.PID, pb.Cmd.Process.Pid)
		}
	}
	select {
	case subj := <-impostorCalls:
		t.Fatalf("the impostor received a call on %s", subj)
	default:
	}

	// The rogue learns the reply subject of a call to bravo (from a spy
	// with the host's identity: the worst case) and publishes a forged
	// answer to it while bravo works; the caller gets bravo's answer.
	spy, err := b.NewConn("spy")
	if err != nil {
		t.Fatal(err)
	}
	replies := make(chan string, 1)
	if _, err := spy.Subscribe("fn.bravo.sleep", func(m *nats.Msg) { replies <- m.Reply }); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make(chan answer, 1)
	go func() { got <- g.post("bravo", "sleep", `{"ms":1000}`) }()
	var reply string
	select {
	case reply = <-replies:
	case <-time.After(10 * time.Second):
		t.Fatal("the call to bravo.sleep was not seen")
	}
	forged := &nats.Msg{Subject: reply, Data: []byte(`{"slept":0,"forged":true}`), Header: nats.Header{"Nats-Service-Error-Code": {"200"}}}
	if err := rogue.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the server to refuse the forged reply", func() bool { return perr.violation(reply) })
	if a := <-got; a.status != 200 || string(a.body) != `{"slept":1000}` {
		t.Errorf("the caller of bravo got %v; want bravo's own answer", a)
	}
	if n := counts(t, g, "bravo")["echo"]; n != 1 {
		t.Errorf("bravo's echo ran %d times; want once, for the gateway's call and not the rogue's", n)
	}

	// With bravo gone, callers get 503, not the impostor's answer.
	if err := pb.Kill(); err == nil {
		t.Fatal("SIGKILL: clean exit")
	}
	eventually(t, 10*time.Second, "calls to bravo to fail", func() bool { return g.post("bravo", "whoami", "{}").status == 503 })
	for range 20 {
		if a := g.post("bravo", "whoami", "{}"); a.status != 503 {
			t.Fatalf("bravo stopped, the impostor running: %v; want 503", a)
		}
	}
	select {
	case s := <-stolen:
		t.Errorf("the rogue received a message on %s", s)
	default:
	}
}
