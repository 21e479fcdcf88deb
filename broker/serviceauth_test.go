package broker_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/transport"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// authBroker is a Broker with service authorization that also listens, so
// services connect over TCP as they would from another process.
func authBroker(t testing.TB, a broker.ServiceAuth) *broker.Broker {
	t.Helper()
	if a.Secret == nil {
		a.Secret = testSecret
	}
	return start(t, broker.WithListen("127.0.0.1:0"), broker.WithServiceAuth(a))
}

// serviceConn connects over TCP with a service's credentials.
func serviceConn(t testing.TB, b *broker.Broker, service string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	creds, err := b.ServiceCredentials(service)
	if err != nil {
		t.Fatalf("ServiceCredentials(%q): %v", service, err)
	}
	nc, err := nats.Connect(b.ClientURL(), append([]nats.Option{creds.Option()}, opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", service, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func isPermissionError(subject string) func(error) bool {
	return func(err error) bool {
		return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`)
	}
}

func TestServiceAuthAuthentication(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{})
	pay, _ := b.ServiceCredentials("payments")
	ord, _ := b.ServiceCredentials("orders")
	host, _ := b.HostCredentials()
	for _, tc := range []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials", nil, false},
		{"service", []nats.Option{pay.Option()}, true},
		{"host", []nats.Option{host.Option()}, true},
		{"wrong password", []nats.Option{nats.UserInfo("payments", "guess")}, false},
		{"another service's password", []nats.Option{nats.UserInfo("payments", ord.Password)}, false},
		{"host password for a service", []nats.Option{nats.UserInfo("payments", host.Password)}, false},
		{"invalid name", []nats.Option{nats.UserInfo("a.b", pay.Password)}, false},
		{"token", []nats.Option{nats.Token(pay.Password)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(b.ClientURL(), tc.opts...)
			if nc != nil {
				defer nc.Close()
			}
			if ok := err == nil; ok != tc.ok {
				t.Fatalf("connect: err = %v; want success %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect: %v; want an authorization error", err)
			}
		})
	}
	// The Broker's own connections have the host's identity.
	c, err := b.NewConn("inproc")
	if err != nil {
		t.Fatalf("NewConn with service auth: %v", err)
	}
	echo(t, c, "anything.at.all", "")
	request(t, b.Conn(), "anything.at.all", "x", "x")
}

// TestServiceAuthMicro registers a NATS micro service with its own
// credentials, as mesh.Service does, and calls and discovers it as the
// host.
func TestServiceAuthMicro(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{})
	e := newErrs()
	nc := serviceConn(t, b, "payments", e.option())
	svc, err := micro.AddService(nc, micro.Config{Name: "payments", Version: "1.0.0"})
	if err != nil {
		t.Fatalf("AddService: %v", err)
	}
	defer svc.Stop()
	if err := svc.AddEndpoint("charge", micro.HandlerFunc(func(r micro.Request) {
		_ = r.Respond(append([]byte("charged "), r.Data()...))
	}), micro.WithEndpointSubject("fn.payments.charge"), micro.WithEndpointQueueGroup(transport.QueueGroup)); err != nil {
		t.Fatalf("AddEndpoint: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	request(t, b.Conn(), "fn.payments.charge", "5", "charged 5")

	// Discovery, on every subject form micro listens on.
	for _, subj := range []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS",
		"$SRV.PING.payments", "$SRV.INFO.payments", "$SRV.STATS.payments",
		"$SRV.INFO.payments." + svc.Info().ID} {
		m, err := b.Conn().Request(subj, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("discovery %s: %v", subj, err)
		}
		var id micro.ServiceIdentity
		if err := json.Unmarshal(m.Data, &id); err != nil || id.Name != "payments" {
			t.Fatalf("discovery %s = %s (%v); want the payments service", subj, m.Data, err)
		}
	}
	if err := e.wait(t, 100*time.Millisecond, func(error) bool { return true }); err != nil {
		t.Fatalf("the service got an error: %v", err)
	}
}

// TestServiceAuthCannotSubscribeToOthers checks every way a service might
// try to take or read another service's calls.
func TestServiceAuthCannotSubscribeToOthers(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{})
	for _, tc := range []struct{ subject, queue string }{
		{"fn.orders.charge", "q"},
		{"fn.orders.>", "q"},
		{"fn.orders.charge", ""},
		{"fn.>", "q"},
		{"fn.*.charge", "q"},
		{">", ""},
		{"fn.payments.charge", ""},      // its own calls, outside the queue group
		{"fn.payments.charge", "other"}, // or in another group
		{"_INBOX.>", ""},
		{"_INBOX_orders.>", ""},
		{"$SRV.PING.orders", ""},
		{"$SRV.>", ""},
	} {
		t.Run(tc.subject+" "+tc.queue, func(t *testing.T) {
			t.Parallel()
			e := newErrs()
			nc := serviceConn(t, b, "payments", e.option())
			if _, err := nc.QueueSubscribe(tc.subject, tc.queue, func(*nats.Msg) {
				t.Errorf("a message on %s reached the payments service", tc.subject)
			}); err != nil {
				t.Fatalf("QueueSubscribe: %v", err)
			}
			if err := e.wait(t, 5*time.Second, isPermissionError(tc.subject)); err == nil {
				t.Fatalf("no permissions violation for payments subscribing to %q in %q", tc.subject, tc.queue)
			}
		})
	}

	// The same through micro: registering as another service fails.
	e := newErrs()
	nc := serviceConn(t, b, "payments", e.option())
	svc, err := micro.AddService(nc, micro.Config{Name: "orders", Version: "1.0.0"})
	if err != nil {
		t.Fatalf("AddService: %v", err)
	}
	defer svc.Stop()
	if err := svc.AddEndpoint("charge", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte("stolen")) }),
		micro.WithEndpointSubject("fn.orders.charge")); err != nil {
		t.Fatalf("AddEndpoint: %v", err)
	}
	if err := e.wait(t, 5*time.Second, isPermissionError("fn.orders.charge")); err == nil {
		t.Fatal("no permissions violation for payments registering fn.orders.charge")
	}
	if _, err := b.Conn().Request("fn.orders.charge", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request to the impostor: %v; want no responders", err)
	}
}

// TestServiceAuthCannotForgeReplies: a rogue process holding the payments
// credentials learns the reply subject of a call to orders (here handed to
// it by the test, the worst case) and publishes a forged answer; the caller
// still gets the genuine one.
func TestServiceAuthCannotForgeReplies(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{})

	replySubject, answer := make(chan string, 1), make(chan struct{})
	orders := serviceConn(t, b, "orders")
	if _, err := orders.QueueSubscribe("fn.orders.get", "q", func(m *nats.Msg) {
		replySubject <- m.Reply
		<-answer
		_ = m.Respond([]byte("genuine"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := orders.Flush(); err != nil {
		t.Fatal(err)
	}

	e := newErrs()
	rogue := serviceConn(t, b, "payments", e.option())
	type result struct {
		msg *nats.Msg
		err error
	}
	got := make(chan result, 1)
	go func() {
		m, err := b.Conn().Request("fn.orders.get", nil, 10*time.Second)
		got <- result{m, err}
	}()
	reply := <-replySubject
	for _, subj := range []string{reply, "fn.orders.get", "_INBOX.forged", "$SRV.PING"} {
		if err := rogue.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		if err := e.wait(t, 5*time.Second, isPermissionError(subj)); err == nil {
			t.Errorf("no permissions violation for payments publishing to %q", subj)
		}
	}
	close(answer)
	r := <-got
	if r.err != nil || string(r.msg.Data) != "genuine" {
		t.Fatalf("caller got %v, %v; want the genuine reply", r.msg, r.err)
	}
}

// TestServiceAuthOneReply: a service may answer a request it received once,
// not keep publishing to the caller's inbox.
func TestServiceAuthOneReply(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{})
	e := newErrs()
	nc := serviceConn(t, b, "payments", e.option())
	if _, err := nc.QueueSubscribe("fn.payments.twice", "q", func(m *nats.Msg) {
		_ = m.Respond([]byte("1"))
		_ = m.Respond([]byte("2"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	inbox := nats.NewInbox()
	sub, err := b.Conn().SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Conn().PublishRequest("fn.payments.twice", inbox, nil); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "1" {
		t.Fatalf("first reply = %v, %v; want 1", m, err)
	}
	if err := e.wait(t, 5*time.Second, isPermissionError(inbox)); err == nil {
		t.Fatal("no permissions violation for the second reply")
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("second reply %q reached the caller", m.Data)
	}
}

// TestServiceAuthCallRoute: a service may publish its own nested calls on
// the call route, call.<itself>.>, and nowhere else: not straight to a
// function, not on another service's route; and it cannot take calls off
// the route itself.
func TestServiceAuthCallRoute(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{})
	got := make(chan *nats.Msg, 10)
	if _, err := b.Conn().Subscribe(">", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "call.") || strings.HasPrefix(m.Subject, "fn.") {
			got <- m
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	e := newErrs()
	pay := serviceConn(t, b, "payments", e.option())
	if !strings.HasPrefix(pay.NewRespInbox(), "_INBOX_payments.") {
		t.Errorf("payments' inbox %q does not use its own prefix", pay.NewRespInbox())
	}
	for _, subj := range []string{"fn.orders.get", "call.orders.payments.get", "call.payments", "_INBOX_orders.x"} {
		if err := pay.PublishRequest(subj, "_INBOX_payments.x", []byte("7")); err != nil {
			t.Fatal(err)
		}
		if err := e.wait(t, 5*time.Second, isPermissionError(subj)); err == nil {
			t.Errorf("no permissions violation for payments publishing to %q", subj)
		}
	}
	if err := pay.PublishRequest("call.payments.orders.get", "_INBOX_payments.x", []byte("7")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Subject != "call.payments.orders.get" || m.Reply != "_INBOX_payments.x" {
			t.Fatalf("the host got %s (reply %s); want call.payments.orders.get, its call", m.Subject, m.Reply)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("payments' call on its own route never reached the host")
	}
	select {
	case m := <-got:
		t.Fatalf("a refused publish reached the host: %s", m.Subject)
	default:
	}
	for _, subj := range []string{"call.>", "call.payments.>", "call.*.*.*"} {
		if _, err := pay.QueueSubscribe(subj, "q", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		if err := e.wait(t, 5*time.Second, isPermissionError(subj)); err == nil {
			t.Errorf("no permissions violation for payments subscribing to %q", subj)
		}
	}
}

func TestServiceAuthCallPrefix(t *testing.T) {
	t.Parallel()
	for _, a := range []broker.ServiceAuth{{CallPrefix: "fn"}, {Prefix: "api", CallPrefix: "api.call"}, {CallPrefix: "a.>"}} {
		a.Secret = testSecret
		if b, err := broker.Start(t.Context(), broker.WithServiceAuth(a)); err == nil {
			b.Close()
			t.Errorf("Start with prefix %q and call prefix %q: no error", a.Prefix, a.CallPrefix)
		}
	}
}

func TestClaimsKey(t *testing.T) {
	t.Parallel()
	a, b := authBroker(t, broker.ServiceAuth{}), authBroker(t, broker.ServiceAuth{})
	if a.ClaimsKey().ID != b.ClaimsKey().ID || string(a.ClaimsKey().Secret) != string(b.ClaimsKey().Secret) {
		t.Error("two brokers with one secret derive different claims keys")
	}
	other := authBroker(t, broker.ServiceAuth{Secret: []byte("another secret of 16+ bytes")})
	if other.ClaimsKey().ID == a.ClaimsKey().ID || string(other.ClaimsKey().Secret) == string(a.ClaimsKey().Secret) {
		t.Error("another secret derives the same claims key")
	}
	plain := start(t)
	if k := plain.ClaimsKey(); k.ID != plain.ClaimsKey().ID || len(k.Secret) < transport.MinClaimsKeyLen {
		t.Errorf("without service auth: key %q of %d bytes, not stable", k.ID, len(k.Secret))
	}
	if _, err := transport.NewClaimsSigner(a.ClaimsKey(), plain.ClaimsKey()); err != nil {
		t.Errorf("the keys do not make a signer: %v", err)
	}
}

func TestServiceAuthPrefix(t *testing.T) {
	t.Parallel()
	b := authBroker(t, broker.ServiceAuth{Prefix: "api.v1"})
	e := newErrs()
	nc := serviceConn(t, b, "payments", e.option())
	if _, err := nc.QueueSubscribe("api.v1.payments.charge", "q", func(m *nats.Msg) { _ = m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.QueueSubscribe("fn.payments.charge", "q", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	request(t, b.Conn(), "api.v1.payments.charge", "", "ok")
	if err := e.wait(t, 5*time.Second, isPermissionError("fn.payments.charge")); err == nil {
		t.Fatal("the default prefix is still allowed with Prefix set")
	}
}

// TestServiceAuthSecret: credentials come from the secret, so they survive
// a restart with the same secret and die with a new one.
func TestServiceAuthSecret(t *testing.T) {
	t.Parallel()
	first := authBroker(t, broker.ServiceAuth{})
	creds, _ := first.ServiceCredentials("payments")
	second := authBroker(t, broker.ServiceAuth{})
	if again, _ := second.ServiceCredentials("payments"); again != creds {
		t.Fatalf("same secret, different credentials: %v and %v", creds, again)
	}
	nc, err := nats.Connect(second.ClientURL(), creds.Option())
	if err != nil {
		t.Fatalf("credentials from the first broker on the second: %v", err)
	}
	nc.Close()

	random1 := start(t, broker.WithListen("127.0.0.1:0"), broker.WithServiceAuth(broker.ServiceAuth{}))
	random2 := start(t, broker.WithListen("127.0.0.1:0"), broker.WithServiceAuth(broker.ServiceAuth{}))
	c1, _ := random1.ServiceCredentials("payments")
	if c2, _ := random2.ServiceCredentials("payments"); c1 == c2 {
		t.Fatal("two random secrets gave the same credentials")
	}
	if nc, err := nats.Connect(random2.ClientURL(), c1.Option()); err == nil {
		nc.Close()
		t.Fatal("credentials of one random-secret broker accepted by another")
	}
}

func TestServiceCredentialsErrors(t *testing.T) {
	t.Parallel()
	plain := start(t)
	if _, err := plain.ServiceCredentials("payments"); !errors.Is(err, broker.ErrNoServiceAuth) {
		t.Errorf("ServiceCredentials without auth: %v; want ErrNoServiceAuth", err)
	}
	if _, err := plain.HostCredentials(); !errors.Is(err, broker.ErrNoServiceAuth) {
		t.Errorf("HostCredentials without auth: %v; want ErrNoServiceAuth", err)
	}
	b := start(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	for _, name := range []string{"", "a.b", "a*", ">", "a b", strings.Repeat("x", 65), broker.HostUser} {
		if _, err := b.ServiceCredentials(name); !errors.Is(err, transport.ErrInvalidName) {
			t.Errorf("ServiceCredentials(%q): %v; want ErrInvalidName", name, err)
		}
	}
	c, err := b.ServiceCredentials("payments")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); strings.Contains(s, c.Password) || !strings.Contains(s, "payments") {
		t.Errorf("String() = %s; want the user without the password", s)
	}
	if c.InboxPrefix != "_INBOX_payments" {
		t.Errorf("InboxPrefix = %q; want _INBOX_payments", c.InboxPrefix)
	}
}

// TestServiceAuthInProcess: a service in the host process uses NewConn with
// its own credentials and gets exactly a service's permissions.
func TestServiceAuthInProcess(t *testing.T) {
	t.Parallel()
	b := start(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	creds, err := b.ServiceCredentials("payments")
	if err != nil {
		t.Fatal(err)
	}
	e := newErrs()
	nc, err := b.NewConn("payments", creds.Option(), e.option())
	if err != nil {
		t.Fatalf("NewConn as payments: %v", err)
	}
	if _, err := nc.QueueSubscribe("fn.payments.x", "q", func(m *nats.Msg) { _ = m.Respond([]byte("in-process")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.QueueSubscribe("fn.orders.x", "q", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	request(t, b.Conn(), "fn.payments.x", "", "in-process")
	if err := e.wait(t, 5*time.Second, isPermissionError("fn.orders.x")); err == nil {
		t.Fatal("in-process service subscribed to another service")
	}
	if _, err := b.NewConn("intruder", nats.UserInfo("payments", "guess")); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("NewConn with a wrong password: %v; want an authorization error", err)
	}
}
