package mesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/syncbuf"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

// The whole stack as a host app wires it: an embedded broker, the
// middleware chain in the recommended order, JWT, OPA (a rule config and a
// Rego policy that reads params), the gateway, and services that call each
// other. It checks what only the assembled pieces can show: one trace from
// the HTTP server span to the nested function, the request ID and claims
// reaching a nested function, and a bad token or a denial never running a
// function.

const stackSecret = "stack-test-secret-at-least-32-bytes-long!"

const stackRules = `{"services": {
  "outer":   {"functions": {"default": {"rule": {"rule": "authenticated"}}}},
  "inner":   {"functions": {"default": {"rule": {"rule": "authenticated"}}}},
  "default": {"functions": {"default": {"rule": {"rule": "deny"}}}}}}`

const stackRego = `package funcmesh.authz

default allow := false

# Nobody may ask outer for more than 100.
allow if {
	input.service == "outer"
	input.params.amount <= 100
}

# inner is not public: only outer's functions may call it.
allow if {
	input.service == "inner"
	input.caller.service == "outer"
}
`

type stack struct {
	url     string
	ran     atomic.Int64 // calls that reached outer.f
	spans   *tracetest.SpanRecorder
	reg     *prometheus.Registry
	logBuf  *syncbuf.Buffer
	mu      sync.Mutex
	innerRx []innerSeen
}

type innerSeen struct {
	requestID string
	claims    map[string]any
	caller    string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{spans: tracetest.NewSpanRecorder(), reg: prometheus.NewRegistry(), logBuf: &syncbuf.Buffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	b, err := broker.Start(ctx)
	if err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })

	stackService(t, b, "inner", tp, map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			claims, _ := c.Claims()
			caller, _ := c.Caller()
			s.mu.Lock()
			s.innerRx = append(s.innerRx, innerSeen{c.RequestID(), claims, caller.String()})
			s.mu.Unlock()
			return c.Params(), nil
		}),
	})
	stackService(t, b, "outer", tp, map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			s.ran.Add(1)
			return c.Client().Invoke(ctx, "inner", "f", c.Params())
		}),
	})

	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: []byte(stackSecret)}},
	})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	policy, err := authz.New(ctx,
		authz.RulesJSON([]byte(stackRules)),
		authz.Module("stack.rego", stackRego))
	if err != nil {
		t.Fatalf("authz.New: %v", err)
	}
	t.Cleanup(func() { _ = policy.Close() })
	metrics, err := middleware.Metrics(s.reg, middleware.MetricsOptions{})
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	signer, err := transport.NewClaimsSigner(b.ClaimsKey())
	if err != nil {
		t.Fatalf("NewClaimsSigner: %v", err)
	}
	gw, err := mesh.NewGateway(b.Conn(), mesh.WithTracerProvider(tp), mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	router, err := mesh.NewRouter(b.Conn(), policy.AuthorizeCall, mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	t.Cleanup(func() { _ = router.Stop(context.Background()) })
	logger := slog.New(slog.NewTextHandler(s.logBuf, nil))
	chain := alice.New(
		middleware.RequestID,
		middleware.AccessLog(logger),
		metrics,
		middleware.Tracing(middleware.TracingOptions{TracerProvider: tp}),
		middleware.Recover(logger),
		middleware.BodyLimit(64<<10),
		middleware.JWT(verifier),
		policy.Middleware,
	)
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", chain.Then(gw))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func stackService(t *testing.T, b *broker.Broker, name string, tp trace.TracerProvider, fns map[string]mesh.Handler) *mesh.Service {
	t.Helper()
	nc, err := b.NewConn(name)
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	svc, err := mesh.NewService(nc, name, mesh.WithTracerProvider(tp))
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	for fn, h := range fns {
		if err := svc.Handle(fn, h); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	return svc
}

func stackToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(stackSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *stack) post(t *testing.T, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func TestStackEndToEnd(t *testing.T) {
	s := newStack(t)
	token := stackToken(t, jwt.MapClaims{"sub": "u1", "role": "tester", "exp": time.Now().Add(time.Hour).Unix()})
	bearer := "Bearer " + token

	status, hdr, body := s.post(t, "/fn/outer/f", `{"amount": 5}`, map[string]string{
		"Authorization": bearer,
		"X-Request-Id":  "req-stack-1",
		"Mesh-Auth":     `{"sub":"forged","role":"admin"}`,
		"traceparent":   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	})
	if status != 200 || body != `{"amount": 5}` {
		t.Fatalf("allowed call: %d %s; want 200 with the params echoed", status, body)
	}
	if got := hdr.Get("X-Request-Id"); got != "req-stack-1" {
		t.Errorf("response X-Request-Id %q; want req-stack-1", got)
	}

	// The nested function saw the caller's request ID, the verified (not
	// the forged) claims, and who called it.
	s.mu.Lock()
	seen := append([]innerSeen(nil), s.innerRx...)
	s.mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("inner.f ran %d times; want 1", len(seen))
	}
	if seen[0].requestID != "req-stack-1" || seen[0].claims["sub"] != "u1" || seen[0].claims["role"] != "tester" || seen[0].caller != "outer.f" {
		t.Errorf("inner.f saw %+v; want request ID req-stack-1, claims of u1, caller outer.f", seen[0])
	}

	// One trace, continued from the client's traceparent, from the HTTP
	// server span through the gateway to the nested function.
	eventually(t, "5 ended spans", func() bool { return len(s.spans.Ended()) >= 5 })
	wantTrace := "0af7651916cd43dd8448eb211c80319c"
	names := map[string]bool{}
	for _, sp := range s.spans.Ended() {
		names[sp.Name()] = true
		if got := sp.SpanContext().TraceID().String(); got != wantTrace {
			t.Errorf("span %q in trace %s; want %s", sp.Name(), got, wantTrace)
		}
	}
	for _, n := range []string{"POST /fn/{service}/{function}", "call outer.f", "serve outer.f", "call inner.f", "serve inner.f"} {
		if !names[n] {
			t.Errorf("no span %q among %v", n, keys(names))
		}
	}

	// Denials and bad tokens never reach a function.
	before := s.ran.Load()
	for _, tc := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
	}{
		{"anonymous", `{"amount": 5}`, nil, 401},
		{"bad token", `{"amount": 5}`, map[string]string{"Authorization": "Bearer " + token[:len(token)-2] + "xx"}, 401},
		{"expired token", `{"amount": 5}`, map[string]string{"Authorization": "Bearer " + stackToken(t, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(-time.Hour).Unix()})}, 401},
		{"policy reads params", `{"amount": 500}`, map[string]string{"Authorization": bearer}, 403},
		{"malformed params", `{"amount": `, map[string]string{"Authorization": bearer}, 400},
		{"inner is not public", `{"amount": 5}`, map[string]string{"Authorization": bearer}, 403},
		{"over the body limit", `{"amount": 5, "pad": "` + strings.Repeat("x", 70<<10) + `"}`, map[string]string{"Authorization": bearer}, 413},
	} {
		path := "/fn/outer/f"
		if tc.name == "inner is not public" {
			path = "/fn/inner/f"
		}
		status, hdr, body := s.post(t, path, tc.body, tc.hdr)
		if status != tc.status {
			t.Errorf("%s: status %d %s; want %d", tc.name, status, body, tc.status)
			continue
		}
		var eb struct {
			Error struct {
				Code      string `json:"code"`
				RequestID string `json:"request_id"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code == "" || eb.Error.RequestID != hdr.Get("X-Request-Id") || eb.Error.RequestID == "" {
			t.Errorf("%s: error body %s; want a JSON error with the request ID %q", tc.name, body, hdr.Get("X-Request-Id"))
		}
	}
	if got := s.ran.Load(); got != before {
		t.Errorf("outer.f ran %d more times after denials; want 0", got-before)
	}

	// The access log names the call and never holds the token; the
	// metrics count the calls by status.
	logs := s.logBuf.String()
	if !strings.Contains(logs, "service=outer") || !strings.Contains(logs, "request_id=req-stack-1") {
		t.Errorf("access log lacks the call: %s", logs)
	}
	if strings.Contains(logs, token[:20]) {
		t.Error("access log holds the token")
	}
	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	scrape, _ := io.ReadAll(res.Body)
	for _, want := range []string{`status="200"`, `status="401"`, `status="403"`, `service="outer"`} {
		if !bytes.Contains(scrape, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
