package mesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

type chargeReq struct {
	Amount int    `json:"amount"`
	Note   string `json:"note"`
}

type receipt struct {
	Charged int    `json:"charged"`
	Note    string `json:"note"`
}

func TestGatewaySuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "payments", map[string]mesh.Handler{
		"echo": echo,
		"charge": mesh.Func(func(_ context.Context, in chargeReq) (receipt, error) {
			return receipt{Charged: in.Amount, Note: in.Note}, nil
		}),
		"text": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			c.SetReplyContentType("text/plain; charset=utf-8")
			return []byte("hello " + c.ContentType()), nil
		}),
		"empty": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { return nil, nil }),
	})

	tests := []struct {
		fn, body, wantBody, wantCT string
	}{
		{"echo", `{"a":1}`, `{"a":1}`, "application/json"},
		{"charge", `{"amount":5,"note":"x"}`, `{"charged":5,"note":"x"}`, "application/json"},
		{"charge", ``, `{"charged":0,"note":""}`, "application/json"},
		{"text", `{}`, "hello application/json", "text/plain; charset=utf-8"},
		{"empty", `{}`, "", "application/json"},
	}
	for _, tt := range tests {
		res := e.post(t, "payments", tt.fn, tt.body)
		if res.status != http.StatusOK {
			t.Errorf("%s: status %d (%s); want 200", tt.fn, res.status, res.body)
			continue
		}
		if string(res.body) != tt.wantBody {
			t.Errorf("%s: body %q; want %q", tt.fn, res.body, tt.wantBody)
		}
		if ct := res.header.Get("Content-Type"); ct != tt.wantCT {
			t.Errorf("%s: Content-Type %q; want %q", tt.fn, ct, tt.wantCT)
		}
		if res.header.Get(transport.HeaderXRequestID) == "" {
			t.Errorf("%s: no %s response header", tt.fn, transport.HeaderXRequestID)
		}
	}

	// A large body passes through unchanged.
	big := `"` + strings.Repeat("x", 300<<10) + `"`
	if res := e.post(t, "payments", "echo", big); res.status != 200 || string(res.body) != big {
		t.Errorf("large echo: status %d, %d bytes; want 200, %d bytes", res.status, len(res.body), len(big))
	}
}

// errorsService has one function per error the table lists.
func errorsService(release <-chan struct{}) map[string]mesh.Handler {
	return map[string]mesh.Handler{
		"plain": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return nil, errors.New("secret internals: db at 10.0.0.1")
		}),
		"panics": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			panic("secret panic")
		}),
		"conflict": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return nil, transport.NewError(transport.CodeConflict, "already charged")
		}),
		"teapot": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return nil, fmt.Errorf("wrapped: %w", transport.ErrorWithStatus(418, "short and stout"))
		}),
		"insufficient": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return nil, transport.ErrorWithStatus(507, "no room")
		}),
		"typed": mesh.Func(func(_ context.Context, in chargeReq) (receipt, error) { return receipt{}, nil }),
		"slow": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-release:
				return []byte(`"late"`), nil
			}
		}),
		"block": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			<-release
			return []byte(`"done"`), nil
		}),
	}
}

func TestGatewayStatusTable(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e := newEnv(t, maxBody(1<<10), mesh.WithTimeout(300*time.Millisecond))
	e.service(t, "svc", errorsService(release))

	// A raw NATS responder that answers with a malformed error reply.
	raw := e.conn(t)
	if _, err := raw.QueueSubscribe("fn.broken.f", transport.QueueGroup, func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Header: nats.Header{transport.HeaderServiceError: {"x"}, transport.HeaderServiceErrorCode: {"banana"}}})
	}); err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, service, function, body string
		status                        int
		code                          transport.Code
		msg                           string // substring of the message, if set
	}{
		{"bad service name", "a.b", "f", `{}`, 400, transport.CodeInvalidArgument, "invalid service name"},
		{"bad function name", "svc", "a%20b", `{}`, 400, transport.CodeInvalidArgument, "invalid function name"},
		{"wildcard name", "svc", "%3E", `{}`, 400, transport.CodeInvalidArgument, "invalid function name"},
		{"malformed params", "svc", "typed", `{"amount":"five"}`, 400, transport.CodeInvalidArgument, "invalid params: cannot decode a JSON string into field amount of type int"},
		{"params not JSON", "svc", "typed", `{"amount":`, 400, transport.CodeInvalidArgument, "invalid params: unexpected end of JSON input at offset"},
		{"no such function", "svc", "nope", `{}`, 404, transport.CodeNotFound, "no function nope"},
		{"body too large", "svc", "typed", `"` + strings.Repeat("x", 2<<10) + `"`, 413, transport.CodeTooLarge, "over 1024 bytes"},
		{"function's own 409", "svc", "conflict", `{}`, 409, transport.CodeConflict, "already charged"},
		{"function's own 418", "svc", "teapot", `{}`, 418, transport.CodeInvalidArgument, "short and stout"},
		{"function's own 507", "svc", "insufficient", `{}`, 507, transport.CodeInternal, "no room"},
		{"plain error", "svc", "plain", `{}`, 500, transport.CodeInternal, "internal error"},
		{"panic", "svc", "panics", `{}`, 500, transport.CodeInternal, "internal error"},
		{"malformed reply", "broken", "f", `{}`, 502, transport.CodeBadReply, ""},
		{"no service", "ghost", "f", `{}`, 503, transport.CodeUnavailable, "not running"},
		{"deadline", "svc", "slow", `{}`, 504, transport.CodeDeadlineExceeded, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, tt.service, tt.function, tt.body)
			if res.status != tt.status || res.errCode() != tt.code {
				t.Fatalf("got %d %q (%s); want %d %q", res.status, res.errCode(), res.body, tt.status, tt.code)
			}
			if !strings.Contains(res.errMessage(), tt.msg) {
				t.Errorf("message %q; want it to contain %q", res.errMessage(), tt.msg)
			}
			if strings.Contains(string(res.body), "secret") {
				t.Errorf("body leaks internals: %s", res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q; want application/json", ct)
			}
		})
	}
}

func TestGatewayTooManyInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEnv(t, nil)
	e.gw.MaxInFlight = 1
	started := make(chan struct{}, 1)
	e.service(t, "svc", map[string]mesh.Handler{
		"block": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			started <- struct{}{}
			<-release
			return []byte(`1`), nil
		}),
	})
	done := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/fn/svc/block", strings.NewReader("{}"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- response{}
			return
		}
		res.Body.Close()
		done <- response{status: res.StatusCode}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("the blocking call ended: %d", r.status)
	}
	res := e.post(t, "svc", "block", `{}`)
	if res.status != 429 || res.errCode() != transport.CodeResourceExhausted {
		t.Errorf("second call: %d %s; want 429", res.status, res.body)
	}
	close(release)
	if r := <-done; r.status != 200 {
		t.Errorf("first call: status %d; want 200", r.status)
	}
}

func TestServiceAtCapacity(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEnv(t, nil)
	started := make(chan struct{}, 1)
	e.service(t, "svc", map[string]mesh.Handler{
		"block": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			started <- struct{}{}
			<-release
			return []byte(`1`), nil
		}),
		"fast": echo,
	}, mesh.WithMaxConcurrency(1))
	done := make(chan error, 1)
	go func() {
		_, err := e.client.Invoke(context.Background(), "svc", "block", nil)
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the blocking call ended: %v", err)
	}
	// The only instance is full: every attempt is refused, at once.
	res := e.post(t, "svc", "fast", `{}`)
	if res.status != 429 || res.errCode() != transport.CodeResourceExhausted {
		t.Errorf("call at capacity: %d %s; want 429", res.status, res.body)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the call holding the instance: %v", err)
	}
	if res := e.post(t, "svc", "fast", `{"x":1}`); res.status != 200 {
		t.Errorf("after release: %d %s; want 200", res.status, res.body)
	}
}

func TestServiceCapacityRetriesOtherInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil, mesh.WithMaxAttempts(50))
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	busy := e.service(t, "svc", map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			if string(c.Params()) == `"block"` {
				started <- struct{}{}
				<-release
			}
			return []byte(`"busy-instance"`), nil
		}),
	}, mesh.WithMaxConcurrency(1))
	done := make(chan error, 1)
	go func() {
		_, err := e.client.Invoke(context.Background(), "svc", "f", []byte(`"block"`))
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the blocking call ended: %v", err)
	}
	e.service(t, "svc", map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { return []byte(`"idle-instance"`), nil }),
	})
	_ = busy
	// Each attempt goes to a random instance; with 50 attempts the idle
	// one answers (the odds of 50 misses are 2^-50).
	for i := 0; i < 20; i++ {
		res := e.post(t, "svc", "f", `"x"`)
		if res.status != 200 || string(res.body) != `"idle-instance"` {
			t.Fatalf("call %d: %d %s; want 200 from the idle instance", i, res.status, res.body)
		}
	}
}

func TestGatewayOuterBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, 10)
			h.ServeHTTP(w, r)
		})
	})
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	// No Content-Length check can catch it: send it chunked.
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/fn/svc/echo", struct{ *strings.Reader }{strings.NewReader(strings.Repeat("x", 100))})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("status %d; want 413", res.StatusCode)
	}
	if r := e.post(t, "svc", "echo", `"ok"`); r.status != 200 {
		t.Errorf("small body: %d; want 200", r.status)
	}
}

// bytesBody is a re-readable body like the authz middleware's.
type bytesBody struct {
	*strings.Reader
	b []byte
}

func (b bytesBody) Close() error  { return nil }
func (b bytesBody) Bytes() []byte { return b.b }

func TestGatewayBytesBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The reader is empty: the gateway must use Bytes().
			r.Body = bytesBody{strings.NewReader(""), []byte(`"from bytes"`)}
			h.ServeHTTP(w, r)
		})
	})
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	if r := e.post(t, "svc", "echo", `"ignored"`); r.status != 200 || string(r.body) != `"from bytes"` {
		t.Errorf("got %d %s; want 200 \"from bytes\"", r.status, r.body)
	}
}

func TestGatewayStripsMeshHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{
		"who": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			claims, ok := c.Claims()
			caller, hasCaller := c.Caller()
			return json.Marshal(map[string]any{"claims": claims, "ok": ok, "caller": hasCaller, "callerName": caller.String(), "deadline": c.Deadline().Unix()})
		}),
	})
	res := e.post(t, "svc", "who", `{}`,
		"Mesh-Auth", `{"sub":"admin"}`, "mesh-caller", "svc.who", "MESH-DEADLINE", "1", "Mesh-Request-Id", "forged")
	var got struct {
		Claims   map[string]any
		Ok       bool
		Caller   bool
		Deadline int64
	}
	if err := json.Unmarshal(res.body, &got); err != nil || res.status != 200 {
		t.Fatalf("got %d %s (%v)", res.status, res.body, err)
	}
	if got.Ok || got.Claims != nil || got.Caller {
		t.Errorf("forged headers reached the function: %s", res.body)
	}
	if got.Deadline < time.Now().Unix() {
		t.Errorf("forged deadline reached the function: %s", res.body)
	}
	if id := res.header.Get(transport.HeaderXRequestID); id == "forged" || id == "" {
		t.Errorf("request ID %q", id)
	}
}

func TestGatewayNamesHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	gw := &mesh.Gateway{Client: e.client, Route: func(r *http.Request) (string, string) {
		return r.URL.Query().Get("s"), r.URL.Query().Get("f")
	}}
	rec := httptest.NewRecorder()
	gw.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/call?s=svc&f=echo", strings.NewReader(`[1]`)))
	if rec.Code != 200 || rec.Body.String() != `[1]` {
		t.Errorf("got %d %s; want 200 [1]", rec.Code, rec.Body)
	}
}

func TestGatewayErrorHandlerAndLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var mu sync.Mutex
	var got []error
	e.gw.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
		w.WriteHeader(599)
	}
	if res := e.post(t, "ghost", "f", `{}`); res.status != 599 {
		t.Errorf("status %d; want the handler's 599", res.status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || transport.CodeOf(got[0]) != transport.CodeUnavailable || !errors.Is(got[0], nats.ErrNoResponders) {
		t.Errorf("handler got %v; want one unavailable error wrapping ErrNoResponders", got)
	}
}

func TestMaxPayload(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, &server.Options{MaxPayload: 8 << 10})
	nc := natstest.Connect(t, s)
	gw, err := mesh.NewGateway(nc)
	if err != nil {
		t.Fatal(err)
	}
	startService(t, natstest.Connect(t, s), "svc", map[string]mesh.Handler{
		"echo": echo,
		"huge": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return bytes.Repeat([]byte("x"), 10<<10), nil
		}),
	})
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", maxBody(1<<20)(gw)) // lowered to what NATS carries
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	limit := 8<<10 - mesh.HeaderRoomForTest
	if r := postURL(t, srv.URL+"/fn/svc/echo", strings.Repeat("y", limit)); r.status != 200 || len(r.body) != limit {
		t.Errorf("body at the limit: %d, %d bytes", r.status, len(r.body))
	}
	if r := postURL(t, srv.URL+"/fn/svc/echo", strings.Repeat("y", limit+1)); r.status != 413 || r.errCode() != transport.CodeTooLarge {
		t.Errorf("body over the limit: %d %s; want 413", r.status, r.body)
	}
	if r := postURL(t, srv.URL+"/fn/svc/huge", "{}"); r.status != 500 || r.errMessage() != "result too large" {
		t.Errorf("result over max payload: %d %s; want 500 result too large", r.status, r.body)
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, nil)
	nc := natstest.Connect(t, s)
	startService(t, natstest.Connect(t, s), "svc", map[string]mesh.Handler{"echo": echo}, mesh.WithPrefix("org.fn"))
	raw := natstest.Connect(t, s)
	m, err := raw.Request("org.fn.svc.echo", []byte(`"raw"`), 5*time.Second)
	if err != nil || string(m.Data) != `"raw"` {
		t.Fatalf("raw request on org.fn.svc.echo: %v", err)
	}
	c, err := mesh.NewClient(nc, mesh.WithPrefix("org.fn"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.Invoke(context.Background(), "svc", "echo", []byte(`1`)); err != nil || string(b) != "1" {
		t.Errorf("Call with the prefix: %s, %v", b, err)
	}
	def, _ := mesh.NewClient(nc)
	if _, err := def.Invoke(context.Background(), "svc", "echo", nil); transport.CodeOf(err) != transport.CodeUnavailable {
		t.Errorf("Call under fn: %v; want unavailable", err)
	}
	d, _ := mesh.NewDiscovery(nc, mesh.WithPrefix("org.fn"))
	eventually(t, "discovery under org.fn to find svc", func() bool {
		list, err := d.Services(context.Background())
		return err == nil && len(list) == 1 && list[0].Name == "svc"
	})
	d, _ = mesh.NewDiscovery(nc)
	if list, err := d.Services(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("discovery under fn: %+v, %v; want no service", list, err)
	}
}

// Pooled body buffers are reused across calls: concurrent calls with
// different bodies must each get their own body back.
func TestGatewayConcurrentBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				body := fmt.Sprintf(`{"g":%d,"i":%d,"pad":%q}`, g, i, strings.Repeat("p", (g*97+i*31)%5000))
				req := httptest.NewRequest(http.MethodPost, "/fn/svc/echo", strings.NewReader(body))
				req.SetPathValue("service", "svc")
				req.SetPathValue("function", "echo")
				rec := httptest.NewRecorder()
				e.gw.ServeHTTP(rec, req)
				if rec.Code != 200 || rec.Body.String() != body {
					errs <- fmt.Sprintf("goroutine %d call %d: %d, body mismatch", g, i, rec.Code)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGatewayMethodNotAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	calls := make(chan struct{}, 10)
	e.service(t, "svc", map[string]mesh.Handler{"echo": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		calls <- struct{}{}
		return c.Params(), nil
	})})
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		rec := httptest.NewRecorder()
		e.gw.ServeHTTP(rec, httptest.NewRequest(method, "/fn/svc/echo", strings.NewReader(`{}`)))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d; want 405", method, rec.Code)
		}
		if got := rec.Header().Get("Allow"); got != http.MethodPost {
			t.Errorf("%s: Allow %q; want POST", method, got)
		}
	}
	if len(calls) != 0 {
		t.Errorf("the function ran %d times for methods other than POST; want 0", len(calls))
	}
	if res := e.post(t, "svc", "echo", `{}`); res.status != http.StatusOK {
		t.Errorf("POST: status %d; want 200", res.status)
	}
}
