package middleware_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestChain runs every middleware together in the recommended order, in
// front of a handler that stands in for the gateway.
func TestChain(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	reg := prometheus.NewRegistry()
	metrics, err := middleware.Metrics(reg, middleware.MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	cors, err := middleware.CORS(middleware.CORSOptions{AllowedOrigins: []string{"https://app.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	verifier := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Logger: logger})

	chain := alice.New(
		middleware.RequestID,
		middleware.AccessLog(logger),
		metrics,
		middleware.Tracing(middleware.TracingOptions{TracerProvider: tp}),
		middleware.Recover(logger),
		cors,
		middleware.BodyLimit(64),
		middleware.JWT(verifier),
	)
	gateway := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			transport.WriteHTTPError(w, transport.NewError(transport.CodeInvalidArgument, "POST only"))
			return
		}
		body, err := io.ReadAll(r.Body)
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			transport.WriteHTTPError(w, transport.NewError(transport.CodeTooLarge, "request body too large"))
			return
		}
		if r.PathValue("function") == "crash" {
			panic("function crashed")
		}
		id, _ := reqctx.RequestID(r.Context())
		claims, _ := reqctx.ClaimsJSON(r.Context())
		json.NewEncoder(w).Encode(map[string]any{
			"request_id": id, "claims": json.RawMessage(orNull(claims)), "params": json.RawMessage(body),
		})
	})
	mux := http.NewServeMux()
	mux.Handle("/fn/{service}/{function}", chain.Then(gateway))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	good := sign(t, jwt.SigningMethodHS256, secret, "", claims("role", "admin"))
	do := func(method, path, token, body string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	// An authenticated call from the browser app.
	resp := do("POST", "/fn/payments/charge", good, `{"amount":5}`, "Origin", "https://app.example.com", transport.HeaderXRequestID, "req-7")
	if resp.StatusCode != 200 {
		t.Fatalf("authenticated call: status %d", resp.StatusCode)
	}
	var out struct {
		RequestID string         `json:"request_id"`
		Claims    map[string]any `json:"claims"`
		Params    map[string]any `json:"params"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.RequestID != "req-7" || out.Claims["role"] != "admin" || out.Params["amount"] != float64(5) {
		t.Errorf("gateway saw %+v", out)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || resp.Header.Get(transport.HeaderXRequestID) != "req-7" {
		t.Errorf("response headers %v", resp.Header)
	}

	// Anonymous: no claims, the policy's call.
	resp = do("POST", "/fn/payments/charge", "", `{}`)
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Claims != nil {
		t.Errorf("anonymous call: %d, claims %v, %v", resp.StatusCode, out.Claims, err)
	}

	// Errors, each a JSON body with the request ID.
	for _, tt := range []struct {
		name   string
		resp   *http.Response
		status int
		code   transport.Code
	}{
		{"bad token", do("POST", "/fn/payments/charge", good+"x", `{}`), 401, transport.CodeUnauthenticated},
		{"declared too large", do("POST", "/fn/payments/charge", good, strings.Repeat("x", 65)), 413, transport.CodeTooLarge},
		{"panic", do("POST", "/fn/payments/crash", good, `{}`), 500, transport.CodeInternal},
	} {
		if tt.resp.StatusCode != tt.status {
			t.Errorf("%s: status %d; want %d", tt.name, tt.resp.StatusCode, tt.status)
			continue
		}
		e, id := readError(t, tt.resp)
		if e.Code() != tt.code || id == "" || id != tt.resp.Header.Get(transport.HeaderXRequestID) {
			t.Errorf("%s: %v, request_id %q (header %q)", tt.name, e, id, tt.resp.Header.Get(transport.HeaderXRequestID))
		}
	}

	// A preflight is answered by CORS: it has no token and needs none.
	resp = do("OPTIONS", "/fn/payments/charge", "", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// What the observers saw: one log line, one span and one count per
	// request, with the statuses sent.
	statuses := map[float64]int{}
	for _, rec := range logs.records(t) {
		if rec["msg"] == "http request" {
			statuses[rec["status"].(float64)]++
			if rec["service"] != "payments" {
				t.Errorf("log record %v without the service", rec)
			}
		}
	}
	if want := map[float64]int{200: 2, 401: 1, 413: 1, 500: 1, 204: 1}; !equalCounts(statuses, want) {
		t.Errorf("access log statuses %v; want %v", statuses, want)
	}
	if n := len(spans.Ended()); n != 6 {
		t.Errorf("%d spans; want 6", n)
	}
	text := scrape(t, reg)
	wantLine(t, text, `funcmesh_http_requests_total\{function="charge",route="/fn/\{service\}/\{function\}",service="payments",status="200"\} 2`)
	wantLine(t, text, `funcmesh_http_requests_total\{function="charge",route="/fn/\{service\}/\{function\}",service="payments",status="401"\} 1`)
	wantLine(t, text, `funcmesh_http_requests_total\{function="crash",route="/fn/\{service\}/\{function\}",service="payments",status="500"\} 1`)
	if s := logs.String(); strings.Contains(s, good) {
		t.Error("a token reached the log")
	}
}

func orNull(b []byte) []byte {
	if b == nil {
		return []byte("null")
	}
	return b
}

func equalCounts(a, b map[float64]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
