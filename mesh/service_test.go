package mesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

func TestLoadBalancing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var counts [2]atomic.Int64
	for i := range counts {
		e.service(t, "lb", map[string]mesh.Handler{
			"who": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
				counts[i].Add(1)
				return []byte(strconv.Itoa(i)), nil
			}),
		})
	}
	// NATS picks a queue member at random: both answer well within 200
	// calls (the odds against are 2^-199).
	for n := 0; n < 200 && (counts[0].Load() == 0 || counts[1].Load() == 0); n++ {
		if _, err := e.client.Invoke(context.Background(), "lb", "who", nil); err != nil {
			t.Fatalf("call %d: %v", n, err)
		}
	}
	if counts[0].Load() == 0 || counts[1].Load() == 0 {
		t.Errorf("instances served %d and %d calls; want both > 0", counts[0].Load(), counts[1].Load())
	}
}

func TestSlowFunctionDoesNotBlockFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	release := make(chan struct{})
	started := make(chan struct{})
	e.service(t, "svc", map[string]mesh.Handler{
		"slow": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			close(started)
			<-release
			return []byte(`"slow"`), nil
		}),
		"fast": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { return []byte(`"fast"`), nil }),
	})
	slowDone := make(chan error, 1)
	go func() {
		_, err := e.client.Invoke(context.Background(), "svc", "slow", nil)
		slowDone <- err
	}()
	select {
	case <-started:
	case err := <-slowDone:
		t.Fatalf("slow call ended early: %v", err)
	}
	// The slow call holds its goroutine; the same instance answers the
	// fast one (and a second call of slow's own endpoint) meanwhile.
	for i := 0; i < 3; i++ {
		b, err := e.client.Invoke(context.Background(), "svc", "fast", nil)
		if err != nil || string(b) != `"fast"` {
			t.Fatalf("fast call while slow runs: %s, %v", b, err)
		}
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Errorf("slow call: %v", err)
	}
}

func TestGracefulStopUnderLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var servedA, servedB atomic.Int64
	work := func(n *atomic.Int64) mesh.Handler {
		return mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			time.Sleep(2 * time.Millisecond) // the behaviour under test: calls in flight at stop
			n.Add(1)
			return c.Params(), nil
		})
	}
	a := e.service(t, "work", map[string]mesh.Handler{"do": work(&servedA)})
	e.service(t, "work", map[string]mesh.Handler{"do": work(&servedB)})

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				want := strconv.Itoa(w*1_000_000 + i)
				got, err := e.client.Invoke(context.Background(), "work", "do", []byte(want))
				if err != nil || string(got) != want {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, errors.Join(err, errors.New("got "+string(got))))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	eventually(t, "both instances to serve", func() bool { return servedA.Load() > 100 && servedB.Load() > 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	atStop := servedB.Load()
	eventually(t, "the other instance to take the load", func() bool { return servedB.Load() > atStop+200 })
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed during a graceful stop; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d calls, instance A served %d, B %d", ok.Load(), servedA.Load(), servedB.Load())
}

func TestStopTimeoutCancelsFunctions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	started := make(chan struct{})
	canceled := make(chan error, 1)
	svc := e.service(t, "svc", map[string]mesh.Handler{
		"hang": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			close(started)
			<-ctx.Done()
			canceled <- ctx.Err()
			return nil, ctx.Err()
		}),
	})
	go func() { _, _ = e.client.Invoke(context.Background(), "svc", "hang", nil) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := svc.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop with a done context: %v; want context.Canceled", err)
	}
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Errorf("function's context: %v; want canceled", err)
	}
	if err := svc.Handle("late", echo); !errors.Is(err, mesh.ErrServiceStopped) {
		t.Errorf("Handle after Stop: %v; want ErrServiceStopped", err)
	}
	// The stop still completes.
	if err := svc.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	hooked := make(chan error, 4)
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{
		"boom": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { panic("kaboom") }),
		"fail": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { return nil, errors.New("db password wrong") }),
		"ok":   echo,
	}, mesh.WithLogger(logger), mesh.WithErrorHook(func(_ context.Context, c *mesh.Call, err error) { hooked <- err }))

	for i := 0; i < 3; i++ {
		res := e.post(t, "svc", "boom", `{}`, transport.HeaderXRequestID, "ignored")
		if res.status != 500 {
			t.Fatalf("panic: status %d; want 500", res.status)
		}
		var pe *mesh.PanicError
		if err := <-hooked; !errors.As(err, &pe) || pe.Value != "kaboom" || !strings.Contains(string(pe.Stack), "service_test.go") {
			t.Fatalf("hook got %v; want a *PanicError with the stack", err)
		}
		if res := e.post(t, "svc", "ok", `"still here"`); res.status != 200 {
			t.Fatalf("after a panic: status %d; want 200", res.status)
		}
	}
	res := e.post(t, "svc", "fail", `{}`)
	if res.status != 500 || strings.Contains(string(res.body), "password") {
		t.Errorf("plain error: %d %s; want 500 without the text", res.status, res.body)
	}
	if err := <-hooked; err == nil || err.Error() != "db password wrong" {
		t.Errorf("hook got %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, want := range []string{"function panicked", "kaboom", "stack=", "db password wrong", "request_id=" + res.header.Get(transport.HeaderXRequestID)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNestedCallPropagation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h http.Handler) http.Handler {
		// What the request ID and JWT middleware put in the context.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := reqctx.WithRequestID(r.Context(), "req-42")
			w.Header().Set(transport.HeaderXRequestID, "req-42")
			ctx = reqctx.WithClaims(ctx, map[string]any{"sub": "u1"}, []byte(`{"sub":"u1","role":"admin"}`))
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	})
	type seen struct {
		Claims    map[string]any `json:"claims"`
		RequestID string         `json:"request_id"`
		Caller    string         `json:"caller"`
		HasCaller bool           `json:"has_caller"`
		Deadline  int64          `json:"deadline"`
	}
	report := func(c *mesh.Call) seen {
		claims, _ := c.Claims()
		caller, ok := c.Caller()
		return seen{claims, c.RequestID(), caller.String(), ok, c.Deadline().UnixMilli()}
	}
	e.service(t, "inner", map[string]mesh.Handler{
		"who": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) { return json.Marshal(report(c)) }),
	})
	e.service(t, "outer", map[string]mesh.Handler{
		"who": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			inner, err := c.Client().Invoke(ctx, "inner", "who", nil)
			if err != nil {
				return nil, err
			}
			return json.Marshal(map[string]any{"outer": report(c), "inner": json.RawMessage(inner)})
		}),
	})
	res := e.post(t, "outer", "who", `{}`)
	if res.status != 200 {
		t.Fatalf("status %d %s", res.status, res.body)
	}
	var got struct{ Outer, Inner seen }
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]seen{"outer": got.Outer, "inner": got.Inner} {
		if s.RequestID != "req-42" || s.Claims["role"] != "admin" || s.Claims["sub"] != "u1" {
			t.Errorf("%s saw %+v; want request ID req-42 and the raw claims", name, s)
		}
	}
	if got.Outer.HasCaller {
		t.Errorf("outer has a caller: %+v", got.Outer)
	}
	if !got.Inner.HasCaller || got.Inner.Caller != "outer.who" {
		t.Errorf("inner caller %q (%v); want outer.who", got.Inner.Caller, got.Inner.HasCaller)
	}
	if got.Inner.Deadline != got.Outer.Deadline {
		t.Errorf("inner deadline %d; want the outer's %d", got.Inner.Deadline, got.Outer.Deadline)
	}
}

// rawRequest sends a request with the given headers straight over NATS.
func rawRequest(t *testing.T, nc *nats.Conn, subject string, h nats.Header, data string) *nats.Msg {
	t.Helper()
	m, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: h, Data: []byte(data)}, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return m
}

func TestServiceRejectsBadHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{
		"claims": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			claims, ok := c.Claims()
			return json.Marshal(map[string]any{"claims": claims, "ok": ok})
		}),
	})
	future := transport.FormatDeadline(time.Now().Add(time.Minute))
	tests := []struct {
		name   string
		h      nats.Header
		status string
	}{
		{"claims not JSON", nats.Header{transport.HeaderAuth: {"{not json"}}, "400"},
		{"claims an array", nats.Header{transport.HeaderAuth: {"[1,2]"}}, "400"},
		{"claims trailing", nats.Header{transport.HeaderAuth: {`{"a":1}{}`}}, "400"},
		{"claims huge", nats.Header{transport.HeaderAuth: {`{"a":"` + strings.Repeat("x", transport.MaxClaimsLen) + `"}`}}, "400"},
		{"deadline garbage", nats.Header{transport.HeaderDeadline: {"soon"}}, "400"},
		{"deadline past", nats.Header{transport.HeaderDeadline: {"1000"}}, "504"},
		{"caller garbage", nats.Header{transport.HeaderCaller: {"a.b.c"}}, "400"},
		{"request ID with space", nats.Header{transport.HeaderRequestID: {"a b"}}, "400"},
		{"request ID too long", nats.Header{transport.HeaderRequestID: {strings.Repeat("r", 201)}}, "400"},
		{"traceparent garbage", nats.Header{transport.HeaderTraceparent: {"zz"}, transport.HeaderDeadline: {future}}, ""},
		{"good claims", nats.Header{transport.HeaderAuth: {` {"sub":"u"} `}}, ""},
	}
	for _, tt := range tests {
		m := rawRequest(t, e.nc, "fn.svc.claims", tt.h, "")
		if got := m.Header.Get(transport.HeaderServiceErrorCode); got != tt.status {
			t.Errorf("%s: error code %q (%s); want %q", tt.name, got, m.Header.Get(transport.HeaderServiceError), tt.status)
		}
	}
	m := rawRequest(t, e.nc, "fn.svc.claims", nats.Header{transport.HeaderAuth: {`{"sub":"u","n":1}`}}, "")
	if string(m.Data) != `{"claims":{"n":1,"sub":"u"},"ok":true}` {
		t.Errorf("claims: %s", m.Data)
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, nil)
	nc := natstest.Connect(t, s, nats.MaxReconnects(-1), nats.ReconnectWait(time.Hour))
	c, err := mesh.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, names := range [][2]string{{"a.b", "f"}, {"a", ""}, {"a", "*"}, {"", "f"}} {
		if _, err := c.Invoke(ctx, names[0], names[1], nil); transport.CodeOf(err) != transport.CodeInvalidArgument {
			t.Errorf("Call(%q, %q): %v; want invalid_argument", names[0], names[1], err)
		}
	}
	// No instance: 503 at once, even with a long deadline.
	long, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	if _, err := c.Invoke(long, "ghost", "f", nil); transport.CodeOf(err) != transport.CodeUnavailable || !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("no instance: %v; want unavailable wrapping ErrNoResponders", err)
	}
	// A cancelled caller.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if _, err := c.Invoke(done, "ghost", "f", nil); transport.CodeOf(err) != transport.CodeCanceled {
		t.Errorf("canceled: %v; want canceled", err)
	}
	// The broker goes away: the client is reconnecting, and fails at once
	// instead of buffering the call for later.
	s.Shutdown()
	eventually(t, "the connection to notice", func() bool { return nc.Status() != nats.CONNECTED })
	if _, err := c.Invoke(long, "any", "f", nil); transport.CodeOf(err) != transport.CodeUnavailable {
		t.Errorf("reconnecting: %v; want unavailable", err)
	}
	nc.Close()
	if _, err := c.Invoke(long, "any", "f", nil); transport.CodeOf(err) != transport.CodeUnavailable {
		t.Errorf("closed: %v; want unavailable", err)
	}
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{
		"hang": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	})
	c, err := mesh.NewClient(e.nc, mesh.WithTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(context.Background(), "svc", "hang", nil); transport.CodeOf(err) != transport.CodeDeadlineExceeded {
		t.Errorf("default timeout: %v; want deadline_exceeded", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.client.Invoke(ctx, "svc", "hang", nil); transport.CodeOf(err) != transport.CodeDeadlineExceeded {
		t.Errorf("context deadline: %v; want deadline_exceeded", err)
	}
}

func TestInvokeJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "payments", map[string]mesh.Handler{
		"charge": mesh.Func(func(_ context.Context, in chargeReq) (receipt, error) {
			if in.Amount <= 0 {
				return receipt{}, transport.NewError(transport.CodeInvalidArgument, "amount must be positive")
			}
			return receipt{Charged: in.Amount}, nil
		}),
		"text": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { return []byte("not json"), nil }),
	})
	got, err := mesh.InvokeJSON[receipt](context.Background(), e.client, "payments", "charge", chargeReq{Amount: 7})
	if err != nil || got.Charged != 7 {
		t.Errorf("InvokeJSON = %+v, %v; want charged 7", got, err)
	}
	_, err = mesh.InvokeJSON[receipt](context.Background(), e.client, "payments", "charge", chargeReq{})
	if e, ok := errors.AsType[*transport.Error](err); !ok || e.HTTPStatus() != 400 || e.Message() != "amount must be positive" {
		t.Errorf("InvokeJSON error = %v; want the function's 400", err)
	}
	if _, err := mesh.InvokeJSON[receipt](context.Background(), e.client, "payments", "text", nil); transport.CodeOf(err) != transport.CodeBadReply {
		t.Errorf("non-JSON result: %v; want bad_reply", err)
	}
	rep, err := e.client.Do(context.Background(), &mesh.Request{Service: "payments", Function: "text", ContentType: "text/plain"})
	if err != nil || rep.ContentType != "application/json" || string(rep.Body) != "not json" {
		t.Errorf("Do = %+v, %v", rep, err)
	}
}

func TestConstructorsValidate(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, nil)
	nc := natstest.Connect(t, s)
	bad := []struct {
		name string
		opts []mesh.ServiceOption
	}{
		{"a.b", nil},
		{"", nil},
		{"ok", []mesh.ServiceOption{mesh.WithMaxConcurrency(0)}},
		{"ok", []mesh.ServiceOption{mesh.WithTimeout(-1)}},
		{"ok", []mesh.ServiceOption{mesh.WithPrefix("a.*")}},
		{"ok", []mesh.ServiceOption{mesh.WithVersion("one")}},
	}
	for _, b := range bad {
		if svc, err := mesh.NewService(nc, b.name, b.opts...); err == nil {
			_ = svc.Stop(context.Background())
			t.Errorf("NewService(%q, %d opts) = nil error", b.name, len(b.opts))
		}
	}
	if _, err := mesh.NewService(nil, "x"); err == nil {
		t.Error("NewService(nil) = nil error")
	}
	if _, err := mesh.NewClient(nc, mesh.WithMaxAttempts(0)); err == nil {
		t.Error("NewClient(WithMaxAttempts(0)) = nil error")
	}
	if _, err := mesh.NewClient(nil); err == nil {
		t.Error("NewClient(nil) = nil error")
	}
	if _, err := mesh.NewDiscovery(nc, mesh.WithDiscoveryWindow(0)); err == nil {
		t.Error("NewDiscovery(WithDiscoveryWindow(0)) = nil error")
	}
	// A client-side option for another kind of thing is an error that
	// names it, never silently ignored.
	if _, err := mesh.NewClient(nc, mesh.WithMaxHops(3)); err == nil || !strings.Contains(err.Error(), "WithMaxHops does not configure a Client") {
		t.Errorf("NewClient(WithMaxHops(3)) = %v; want an error naming WithMaxHops", err)
	}
	if _, err := mesh.NewDiscovery(nc, mesh.WithTimeout(time.Second)); err == nil || !strings.Contains(err.Error(), "WithTimeout does not configure a Discovery") {
		t.Errorf("NewDiscovery(WithTimeout) = %v; want an error naming WithTimeout", err)
	}
	if _, err := mesh.NewDiscovery(nc, mesh.WithLogger(nil)); err == nil {
		t.Error("NewDiscovery(WithLogger) = nil error; a Discovery does not log")
	}
	if _, err := mesh.NewDiscovery(nc, mesh.WithPrefix("org.fn"), nil); err != nil {
		t.Errorf("NewDiscovery(WithPrefix, nil) = %v; want nil", err)
	}
	svc := startService(t, nc, "dup", map[string]mesh.Handler{"f": echo})
	if err := svc.Handle("f", echo); err == nil {
		t.Error("second Handle(f) = nil error")
	}
	if err := svc.Handle("a.b", echo); err == nil {
		t.Error("Handle(a.b) = nil error")
	}
	if err := svc.Handle("g", nil); err == nil {
		t.Error("Handle(nil) = nil error")
	}
}
