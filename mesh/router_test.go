package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// authEnv is an embedded broker with per-service credentials, the host's
// gateway client (which signs the claims it sends) and a router.
type authEnv struct {
	b      *broker.Broker
	client *mesh.Client
	router *mesh.Router
}

func newAuthEnv(t *testing.T, authorize mesh.AuthorizeFunc, opts ...mesh.ClientOption) *authEnv {
	t.Helper()
	b, err := broker.Start(context.Background(), broker.WithServiceAuth(broker.ServiceAuth{Secret: []byte("router-test-secret-0123456789")}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	client, err := mesh.NewClient(b.Conn(), mesh.WithClaimsSigner(testSigner))
	if err != nil {
		t.Fatal(err)
	}
	return &authEnv{b: b, client: client, router: startRouter(t, b.Conn(), authorize, opts...)}
}

// conn connects with a service's credentials; errs, if not nil, collects
// the connection's asynchronous errors (permission violations).
func (e *authEnv) conn(t *testing.T, service string, errs *asyncErrs) *nats.Conn {
	t.Helper()
	creds, err := e.b.ServiceCredentials(service)
	if err != nil {
		t.Fatal(err)
	}
	opts := []nats.Option{creds.Option()}
	if errs != nil {
		opts = append(opts, errs.option())
	}
	nc, err := e.b.NewConn(service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// asyncErrs collects a connection's asynchronous errors.
type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrs) option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		a.mu.Lock()
		a.errs = append(a.errs, err)
		a.mu.Unlock()
	})
}

// refused reports whether the server refused something on subject.
func (a *asyncErrs) refused(subject string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, err := range a.errs {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// whoami reports what a called function saw.
type whoami struct {
	Claims    map[string]any `json:"claims"`
	RequestID string         `json:"request_id"`
	Caller    string         `json:"caller"`
	Deadline  int64          `json:"deadline"`
	Hops      string         `json:"hops"`
}

func whoamiHandler(ran *atomic.Int64) mesh.Handler {
	return mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		ran.Add(1)
		claims, _ := c.Claims()
		caller, _ := c.Caller()
		return json.Marshal(whoami{claims, c.RequestID(), caller.String(), c.Deadline().UnixMilli(), ""})
	})
}

// relay is a function that calls {"service", "function"} with its own
// context and returns the answer.
var relay = mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
	var in struct {
		Service, Function string
		TimeoutMS         int
	}
	if err := c.Decode(&in); err != nil {
		return nil, err
	}
	if in.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(in.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	return c.Client().Invoke(ctx, in.Service, in.Function, nil)
})

// byCaller is a policy written as a Go function: a may call b.open, and
// only a's function "relay" may call b.whoami.
func byCaller(ctx context.Context, service, function string, _ []byte) error {
	caller, ok := reqctx.Caller(ctx)
	switch {
	case !ok:
		return transport.NewError(transport.CodeInternal, "no caller in the context")
	case caller.Service == "a" && service == "b" && function == "open",
		caller == transport.Caller{Service: "a", Function: "relay"} && service == "b" && function == "whoami":
		return nil
	}
	return transport.ErrorWithStatus(http.StatusForbidden, caller.String()+" may not call "+service+"."+function)
}

func TestRouterPolicy(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, byCaller)
	var ran atomic.Int64
	startService(t, e.conn(t, "b", nil), "b", map[string]mesh.Handler{
		"open": echo, "whoami": whoamiHandler(&ran), "closed": whoamiHandler(&ran),
	})
	startService(t, e.conn(t, "a", nil), "a", map[string]mesh.Handler{"relay": relay, "other": relay})
	ctx := reqctx.WithRequestID(context.Background(), "req-policy")
	ctx = reqctx.WithClaims(ctx, map[string]any{"sub": "u1"}, []byte(`{"sub":"u1"}`))

	out, err := e.client.Invoke(ctx, "a", "relay", []byte(`{"service":"b","function":"whoami"}`))
	if err != nil {
		t.Fatalf("a.relay → b.whoami: %v", err)
	}
	var w whoami
	if err := json.Unmarshal(out, &w); err != nil {
		t.Fatal(err)
	}
	if w.Caller != "a.relay" || w.RequestID != "req-policy" || w.Claims["sub"] != "u1" {
		t.Errorf("b.whoami saw %+v; want caller a.relay, req-policy, the claims of u1", w)
	}
	for _, tc := range []struct{ fn, params string }{
		{"relay", `{"service":"b","function":"closed"}`},
		{"other", `{"service":"b","function":"whoami"}`},
	} {
		_, err := e.client.Invoke(ctx, "a", tc.fn, []byte(tc.params))
		if e, ok := errors.AsType[*transport.Error](err); !ok || e.HTTPStatus() != 403 || !strings.Contains(e.Message(), "may not call") {
			t.Errorf("a.%s %s: %v; want the policy's 403", tc.fn, tc.params, err)
		}
	}
	if n := ran.Load(); n != 1 {
		t.Errorf("b's functions ran %d times; want 1 (denied calls never reach them)", n)
	}
}

// TestRouterClaims sends nested calls as a rogue holding a's credentials
// would, with every kind of forged or stale claims: none reaches b.
func TestRouterClaims(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, func(context.Context, string, string, []byte) error { return nil })
	var ran atomic.Int64
	startService(t, e.conn(t, "b", nil), "b", map[string]mesh.Handler{"whoami": whoamiHandler(&ran)})
	rogue := e.conn(t, "a", nil)

	claims := `{"sub":"u1","role":"user"}`
	deadline := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	sig := testSigner.Sign(claims, "req-1", deadline)
	other, _ := transport.NewClaimsSigner(transport.ClaimsKey{ID: "test", Secret: []byte(strings.Repeat("x", 32))})
	short := time.Now().Add(50 * time.Millisecond)
	shortSig := testSigner.Sign(claims, "req-old", short)

	call := func(h nats.Header) (*nats.Msg, error) {
		h.Set(transport.HeaderCaller, "a.f")
		return rogue.RequestMsg(&nats.Msg{Subject: "call.a.b.whoami", Header: h}, 5*time.Second)
	}
	hdr := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	dl := transport.FormatDeadline(deadline)
	for _, tc := range []struct {
		name string
		h    nats.Header
		want int
	}{
		{"claims without a signature", hdr("Mesh-Auth", `{"role":"admin"}`, "Mesh-Request-Id", "req-1", "Mesh-Deadline", dl), 401},
		{"one byte changed", hdr("Mesh-Auth", strings.Replace(claims, "user", "usex", 1), "Mesh-Auth-Sig", sig, "Mesh-Request-Id", "req-1", "Mesh-Deadline", dl), 401},
		{"role raised", hdr("Mesh-Auth", `{"sub":"u1","role":"admin"}`, "Mesh-Auth-Sig", sig, "Mesh-Request-Id", "req-1", "Mesh-Deadline", dl), 401},
		{"another request ID", hdr("Mesh-Auth", claims, "Mesh-Auth-Sig", sig, "Mesh-Request-Id", "req-2", "Mesh-Deadline", dl), 401},
		{"a later deadline", hdr("Mesh-Auth", claims, "Mesh-Auth-Sig", sig, "Mesh-Request-Id", "req-1", "Mesh-Deadline", transport.FormatDeadline(deadline.Add(time.Hour))), 401},
		{"another host's key", hdr("Mesh-Auth", claims, "Mesh-Auth-Sig", other.Sign(claims, "req-1", deadline), "Mesh-Request-Id", "req-1", "Mesh-Deadline", dl), 401},
		{"no request ID", hdr("Mesh-Auth", claims, "Mesh-Auth-Sig", sig, "Mesh-Deadline", dl), 401},
		{"not a JSON object", hdr("Mesh-Auth", `["admin"]`, "Mesh-Auth-Sig", sig, "Mesh-Request-Id", "req-1", "Mesh-Deadline", dl), 401},
		{"bad hops", hdr("Mesh-Hops", "-1"), 400},
		{"hops at the limit", hdr("Mesh-Hops", strconv.Itoa(mesh.DefaultMaxHops)), 508},
	} {
		m, err := call(tc.h)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if e := transport.ErrorFromHeaders(m.Header); e == nil || e.HTTPStatus() != tc.want {
			t.Errorf("%s: answer %v %q; want %d", tc.name, e, m.Data, tc.want)
		}
	}

	// A signature taken from an older call, after that call's deadline.
	for time.Now().Before(short.Add(5 * time.Millisecond)) {
		time.Sleep(time.Until(short.Add(5 * time.Millisecond))) // the behaviour under test: a signature after its deadline
	}
	m, err := call(hdr("Mesh-Auth", claims, "Mesh-Auth-Sig", shortSig, "Mesh-Request-Id", "req-old", "Mesh-Deadline", transport.FormatDeadline(short)))
	if err != nil {
		t.Fatal(err)
	}
	if e := transport.ErrorFromHeaders(m.Header); e == nil || e.HTTPStatus() != 504 {
		t.Errorf("an expired signature: answer %v; want 504", e)
	}

	// Mesh-Caller naming another service than the route's.
	m, err = rogue.RequestMsg(&nats.Msg{Subject: "call.a.b.whoami", Header: hdr("Mesh-Caller", "b.f")}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e := transport.ErrorFromHeaders(m.Header); e == nil || e.HTTPStatus() != 400 {
		t.Errorf("Mesh-Caller b.f on a's route: answer %v; want 400", e)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("b.whoami ran %d times for forged calls; want 0", n)
	}

	// The genuine signature passes, and b sees the claims and a as caller.
	m, err = call(hdr("Mesh-Auth", claims, "Mesh-Auth-Sig", sig, "Mesh-Request-Id", "req-1", "Mesh-Deadline", dl))
	if err != nil {
		t.Fatal(err)
	}
	var w whoami
	if err := json.Unmarshal(m.Data, &w); err != nil || w.Claims["role"] != "user" || w.Caller != "a.f" || w.RequestID != "req-1" || w.Deadline != deadline.UnixMilli() {
		t.Errorf("genuine claims: b saw %s (%v); want role user, caller a.f, req-1, deadline %d", m.Data, err, deadline.UnixMilli())
	}
}

// TestRouterHostileReply: nested calls whose reply subject is not the
// caller's own inbox are dropped, and nothing reaches that subject.
func TestRouterHostileReply(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, func(context.Context, string, string, []byte) error { return nil })
	var ran atomic.Int64
	startService(t, e.conn(t, "b", nil), "b", map[string]mesh.Handler{"whoami": whoamiHandler(&ran)})
	got := make(chan string, 100)
	if _, err := e.b.Conn().Subscribe(">", func(m *nats.Msg) {
		if !strings.HasPrefix(m.Subject, "call.") && !strings.HasPrefix(m.Subject, "$SRV.") && !strings.HasPrefix(m.Subject, "_INBOX.") {
			got <- m.Subject
		}
	}); err != nil {
		t.Fatal(err)
	}
	_ = e.b.Conn().Flush()
	rogue := e.conn(t, "a", nil)
	hostile := []string{"_INBOX.x.y", "_INBOX_b.x", "$JS.API.STREAM.DELETE.S", "$SYS.REQ.SERVER.PING", "fn.b.whoami",
		"_INBOX_a", "_INBOX_a.>", "_INBOX_a.*", "_INBOX_a..x", "_INBOX_ab.x", ""}
	for _, reply := range hostile {
		if err := rogue.PublishMsg(&nats.Msg{Subject: "call.a.b.whoami", Reply: reply, Header: nats.Header{"Mesh-Caller": {"a.f"}}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = rogue.Flush()
	eventually(t, "the router to refuse every hostile reply subject", func() bool { return e.router.Refused() == int64(len(hostile)) })
	// A call with a genuine reply subject after them: once it is answered,
	// anything the router would have sent for the others has arrived.
	if m, err := rogue.RequestMsg(&nats.Msg{Subject: "call.a.b.whoami", Header: nats.Header{"Mesh-Caller": {"a.f"}}}, 5*time.Second); err != nil || transport.ErrorFromHeaders(m.Header) != nil {
		t.Fatalf("a genuine call: %v", err)
	}
	_ = e.b.Conn().Flush()
	for len(got) > 0 {
		// The genuine call and its answer, to a's own inbox, only.
		if s := <-got; s != "fn.b.whoami" && !strings.HasPrefix(s, "_INBOX_a.") {
			t.Errorf("a message reached %s", s)
		}
	}
	if n := ran.Load(); n != 1 {
		t.Errorf("b.whoami ran %d times; want 1 (the genuine call only)", n)
	}
}

// TestRouterReplyOfReply: a hostile callee answers a routed call with a
// reply subject of its choosing. The router relays the answer without it,
// so the caller gets no permission to publish there.
func TestRouterReplyOfReply(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, func(context.Context, string, string, []byte) error { return nil })
	b := e.conn(t, "b", nil)
	if _, err := b.QueueSubscribe("fn.b.f", "q", func(m *nats.Msg) {
		_ = b.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: "$SYS.REQ.SERVER.PING", Data: []byte(`"bounce"`)})
	}); err != nil {
		t.Fatal(err)
	}
	_ = b.Flush()
	var errs asyncErrs
	a := e.conn(t, "a", &errs)
	m, err := a.RequestMsg(&nats.Msg{Subject: "call.a.b.f", Header: nats.Header{"Mesh-Caller": {"a.f"}}}, 5*time.Second)
	if err != nil || string(m.Data) != `"bounce"` {
		t.Fatalf("call: %v", err)
	}
	if m.Reply != "" {
		t.Fatalf("the answer reached a with the reply subject %q", m.Reply)
	}
	if err := a.Publish("$SYS.REQ.SERVER.PING", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's publish to $SYS to be refused", func() bool { return errs.refused("$SYS.REQ.SERVER.PING") })
}

// TestRouterLoop: a → b → a → … ends at the hop limit with 508.
func TestRouterLoop(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, func(context.Context, string, string, []byte) error { return nil }, mesh.WithMaxHops(4))
	var runs atomic.Int64
	ping := func(next string) mesh.Handler {
		return mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			runs.Add(1)
			return c.Client().Invoke(ctx, next, "ping", nil)
		})
	}
	startService(t, e.conn(t, "a", nil), "a", map[string]mesh.Handler{"ping": ping("b")})
	startService(t, e.conn(t, "b", nil), "b", map[string]mesh.Handler{"ping": ping("a")})
	start := time.Now()
	_, err := e.client.Invoke(context.Background(), "a", "ping", nil)
	if transport.CodeOf(err) != transport.CodeLoopDetected || transport.AsError(err).HTTPStatus() != 508 {
		t.Fatalf("loop: %v; want 508 loop_detected", err)
	}
	if n := runs.Load(); n != 5 {
		t.Errorf("the loop ran %d functions; want 5 (hops 0 to 4)", n)
	}
	if d := time.Since(start); d > mesh.DefaultTimeout/2 {
		t.Errorf("the loop took %v to end", d)
	}
}

// TestRouterDeadline: a nested call's deadline is the parent's, or the
// shorter one the calling function set; never later.
func TestRouterDeadline(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, func(context.Context, string, string, []byte) error { return nil })
	var ran atomic.Int64
	startService(t, e.conn(t, "b", nil), "b", map[string]mesh.Handler{"whoami": whoamiHandler(&ran)})
	startService(t, e.conn(t, "a", nil), "a", map[string]mesh.Handler{"relay": relay})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	parent, _ := ctx.Deadline()
	for _, tc := range []struct {
		params string
		want   time.Time
	}{
		{`{"service":"b","function":"whoami"}`, parent},
		{`{"service":"b","function":"whoami","timeoutms":500}`, time.Now().Add(500 * time.Millisecond)},
	} {
		out, err := e.client.Invoke(ctx, "a", "relay", []byte(tc.params))
		if err != nil {
			t.Fatal(err)
		}
		var w whoami
		_ = json.Unmarshal(out, &w)
		if got := time.UnixMilli(w.Deadline); got.After(parent) || got.Sub(tc.want).Abs() > 200*time.Millisecond {
			t.Errorf("%s: b's deadline %v; want about %v, never after the parent's %v", tc.params, got, tc.want, parent)
		}
	}
	// An anonymous caller asking for a deadline an hour away gets the
	// router's bound.
	rogue := e.conn(t, "a", nil)
	m, err := rogue.RequestMsg(&nats.Msg{Subject: "call.a.b.whoami", Header: nats.Header{
		"Mesh-Caller": {"a.f"}, "Mesh-Deadline": {transport.FormatDeadline(time.Now().Add(time.Hour))}}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var w whoami
	_ = json.Unmarshal(m.Data, &w)
	if got := time.UnixMilli(w.Deadline); got.After(time.Now().Add(mesh.DefaultTimeout)) {
		t.Errorf("anonymous call asking for an hour: b's deadline %v; want within %v", got, mesh.DefaultTimeout)
	}
}

// TestRouterNone: without a router a nested call fails at once with 503.
func TestRouterNone(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	nc, _ := b.NewConn("svc")
	startService(t, nc, "a", map[string]mesh.Handler{"relay": relay})
	startService(t, nc, "b", map[string]mesh.Handler{"open": echo})
	client, _ := mesh.NewClient(b.Conn())
	start := time.Now()
	_, err = client.Invoke(context.Background(), "a", "relay", []byte(`{"service":"b","function":"open"}`))
	if transport.CodeOf(err) != transport.CodeUnavailable || time.Since(start) > time.Second {
		t.Fatalf("nested call without a router: %v after %v; want 503 at once", err, time.Since(start))
	}
}

func TestNewRouterErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	allow := func(context.Context, string, string, []byte) error { return nil }
	for name, f := range map[string]func() (*mesh.Router, error){
		"nil conn":      func() (*mesh.Router, error) { return mesh.NewRouter(nil, allow, mesh.WithClaimsSigner(testSigner)) },
		"nil authorize": func() (*mesh.Router, error) { return mesh.NewRouter(e.nc, nil, mesh.WithClaimsSigner(testSigner)) },
		"no signer":     func() (*mesh.Router, error) { return mesh.NewRouter(e.nc, allow) },
		"overlap": func() (*mesh.Router, error) {
			return mesh.NewRouter(e.nc, allow, mesh.WithClaimsSigner(testSigner), mesh.WithCallPrefix("fn"))
		},
		"hops": func() (*mesh.Router, error) {
			return mesh.NewRouter(e.nc, allow, mesh.WithClaimsSigner(testSigner), mesh.WithMaxHops(0))
		},
		"workers": func() (*mesh.Router, error) {
			return mesh.NewRouter(e.nc, allow, mesh.WithClaimsSigner(testSigner), mesh.WithRouterWorkers(0))
		},
	} {
		if r, err := f(); err == nil {
			_ = r.Stop(context.Background())
			t.Errorf("%s: NewRouter succeeded", name)
		}
	}
}

// TestRouterLocal: a service in the host process whose nested calls pass
// the router in the process: the same policy, caller, claims, hop limit.
func TestRouterLocal(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, byCaller, mesh.WithMaxHops(3))
	var ran atomic.Int64
	startService(t, e.conn(t, "b", nil), "b", map[string]mesh.Handler{"whoami": whoamiHandler(&ran), "closed": whoamiHandler(&ran)})
	hostConn, err := e.b.NewConn("a-in-host")
	if err != nil {
		t.Fatal(err)
	}
	startService(t, hostConn, "a", map[string]mesh.Handler{"relay": relay, "other": relay}, mesh.WithLocalRouter(e.router))
	ctx := reqctx.WithRequestID(context.Background(), "req-local")
	ctx = reqctx.WithClaims(ctx, map[string]any{"sub": "u1"}, []byte(`{"sub":"u1"}`))
	out, err := e.client.Invoke(ctx, "a", "relay", []byte(`{"service":"b","function":"whoami"}`))
	if err != nil {
		t.Fatalf("a.relay → b.whoami: %v", err)
	}
	var w whoami
	if err := json.Unmarshal(out, &w); err != nil || w.Caller != "a.relay" || w.RequestID != "req-local" || w.Claims["sub"] != "u1" {
		t.Errorf("b.whoami saw %s (%v); want caller a.relay, req-local, the claims of u1", out, err)
	}
	for _, params := range []string{`{"service":"b","function":"closed"}`} {
		if _, err := e.client.Invoke(ctx, "a", "relay", []byte(params)); transport.AsError(err).HTTPStatus() != 403 {
			t.Errorf("a.relay %s: %v; want 403", params, err)
		}
	}
	if n := ran.Load(); n != 1 {
		t.Errorf("b ran %d times; want 1", n)
	}
	// Forged claims in the process are refused too: a call whose claims
	// were never signed.
	unsigned, _ := mesh.NewClient(e.b.Conn())
	if _, err := unsigned.Invoke(ctx, "a", "relay", []byte(`{"service":"b","function":"whoami"}`)); transport.AsError(err).HTTPStatus() != 401 {
		t.Errorf("unsigned claims through the local router: %v; want 401", err)
	}
}

// TestRouterCluster: two host nodes in one NATS cluster with the same
// ServiceAuth secret; services connect to node 1 with their credentials,
// only node 2 runs a router. Nested calls cross the cluster through it;
// with routers on both nodes, stopping one leaves the other serving.
func TestRouterCluster(t *testing.T) {
	t.Parallel()
	auth := broker.ServiceAuth{Secret: []byte("router-cluster-secret-0123456789")}
	node := func(name string, routes ...string) *broker.Broker {
		b, err := broker.Start(context.Background(), broker.WithServerName(name), broker.WithServiceAuth(auth), broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Name: "nested", Listen: "127.0.0.1:0", Routes: routes}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	n1 := node("n1")
	n2 := node("n2", n1.ClusterURL())
	conn := func(b *broker.Broker, service string) *nats.Conn {
		creds, _ := b.ServiceCredentials(service)
		nc, err := b.NewConn(service, creds.Option())
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	var ran atomic.Int64
	startService(t, conn(n1, "b"), "b", map[string]mesh.Handler{"whoami": whoamiHandler(&ran)})
	startService(t, conn(n1, "a"), "a", map[string]mesh.Handler{"relay": relay})
	signer, err := transport.NewClaimsSigner(n1.ClaimsKey())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := mesh.NewRouter(n2.Conn(), byCaller, mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r2.Stop(context.Background()) })
	client, _ := mesh.NewClient(n1.Conn(), mesh.WithClaimsSigner(signer))
	ctx := reqctx.WithClaims(context.Background(), map[string]any{"sub": "u1"}, []byte(`{"sub":"u1"}`))
	call := func() error {
		_, err := client.Invoke(ctx, "a", "relay", []byte(`{"service":"b","function":"whoami"}`))
		return err
	}
	// Interest crosses the route asynchronously: poll.
	eventually(t, "a nested call through node 2's router", func() bool { return call() == nil })

	r1, err := mesh.NewRouter(n1.Conn(), byCaller, mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatal(err)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r2.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := call(); err != nil {
			t.Fatalf("with node 2's router stopped: %v; want node 1's to serve", err)
		}
	}
	_ = r1.Stop(stopCtx)
}

// TestRouterKeyRotation: a router that signs with a new key and still
// verifies with the old one takes the calls of gateways that have not
// rotated yet; once the old key is dropped, their claims are refused.
func TestRouterKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey := transport.ClaimsKey{ID: "old", Secret: []byte(strings.Repeat("o", 32))}
	newKey := transport.ClaimsKey{ID: "new", Secret: []byte(strings.Repeat("n", 32))}
	oldSigner, _ := transport.NewClaimsSigner(oldKey)
	rotated, _ := transport.NewClaimsSigner(newKey, oldKey)
	retired, _ := transport.NewClaimsSigner(newKey)
	b, err := broker.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	var ran atomic.Int64
	nc, _ := b.NewConn("svc")
	startService(t, nc, "b", map[string]mesh.Handler{"whoami": whoamiHandler(&ran)})
	startService(t, nc, "a", map[string]mesh.Handler{"relay": relay})
	gw, _ := mesh.NewClient(b.Conn(), mesh.WithClaimsSigner(oldSigner))
	ctx := reqctx.WithClaims(context.Background(), map[string]any{"sub": "u1"}, []byte(`{"sub":"u1"}`))
	allow := func(context.Context, string, string, []byte) error { return nil }
	for _, tc := range []struct {
		name   string
		signer *transport.ClaimsSigner
		want   int
	}{{"rotated", rotated, 200}, {"old key retired", retired, 401}} {
		r, err := mesh.NewRouter(b.Conn(), allow, mesh.WithClaimsSigner(tc.signer))
		if err != nil {
			t.Fatal(err)
		}
		_, err = gw.Invoke(ctx, "a", "relay", []byte(`{"service":"b","function":"whoami"}`))
		if got := 200; err != nil {
			got = transport.AsError(err).HTTPStatus()
			if got != tc.want {
				t.Errorf("%s: %v; want %d", tc.name, err, tc.want)
			}
		} else if got != tc.want {
			t.Errorf("%s: 200; want %d", tc.name, tc.want)
		}
		_ = r.Stop(context.Background())
	}
}
