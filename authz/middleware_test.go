package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/internal/syncbuf"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

type claimsKey struct{}

// withTestClaims stands in for the JWT middleware: it puts the JSON
// claims of the X-Test-Claims header in the context.
func withTestClaims(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.Header.Get("X-Test-Claims"); c != "" {
			claims, err := transport.DecodeClaims(c)
			if err != nil {
				http.Error(w, err.Error(), http.StatusTeapot)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims))
		}
		next.ServeHTTP(w, r)
	})
}

func testClaims(ctx context.Context) (map[string]any, bool) {
	c, ok := ctx.Value(claimsKey{}).(map[string]any)
	return c, ok
}

// echo answers 200 with the body it got, and says whether the body was
// the middleware's *authz.Body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if ab, ok := r.Body.(*authz.Body); ok {
		w.Header().Set("X-Body", "authz")
		if !bytes.Equal(ab.Bytes(), b) {
			w.Header().Set("X-Body", "mismatch")
		}
	}
	w.Write(b)
})

// serve starts an HTTP server with a's middleware before echo on
// POST /fn/{service}/{function}.
func serve(t *testing.T, a *authz.Authorizer, outer ...func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = a.Middleware(echo)
	for _, m := range outer {
		h = m(h)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", withTestClaims(h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type call struct {
	path    string
	body    string
	claims  string
	headers map[string]string
}

type answer struct {
	status  int
	body    string
	header  http.Header
	errCode transport.Code
	errMsg  string
}

func do(t *testing.T, srv *httptest.Server, c call) answer {
	t.Helper()
	req, err := http.NewRequest("POST", srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.claims != "" {
		req.Header.Set("X-Test-Claims", c.claims)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: string(b), header: resp.Header}
	if resp.StatusCode >= 400 {
		e, _, err := transport.ParseHTTPError(resp.StatusCode, b)
		if err != nil {
			t.Fatalf("%s: error body %q: %v", c.path, b, err)
		}
		a.errCode, a.errMsg = e.Code(), e.Message()
	}
	return a
}

func TestMiddlewareRules(t *testing.T) {
	t.Parallel()
	const rules = `{"services": {
		"payments": {"functions": {
			"charge": {"rule": {"rule": "and", "clauses": [
				{"rule": "authenticated"},
				{"rule": "match", "eval": "<=", "type": "number", "f1": "args.params.amount", "f2": 100}]}},
			"default": {"rule": {"rule": "deny"}}}},
		"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`
	a := newAuthorizer(t, authz.RulesJSON([]byte(rules)), authz.WithClaims(testClaims))
	srv := serve(t, a, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(reqctx.WithMaxBodyBytes(r.Context(), 128))) // as middleware.BodyLimit does
		})
	})
	user := `{"sub": "u1"}`
	tests := []struct {
		name     string
		call     call
		status   int
		code     transport.Code
		bodyType string // X-Body the handler saw
	}{
		{"allowed, body handed on", call{path: "/fn/payments/charge", body: `{"amount": 5}`, claims: user}, 200, "", "authz"},
		{"over the amount", call{path: "/fn/payments/charge", body: `{"amount": 500}`, claims: user}, 403, transport.CodePermissionDenied, ""},
		{"amount as a string", call{path: "/fn/payments/charge", body: `{"amount": "5"}`, claims: user}, 403, transport.CodePermissionDenied, ""},
		{"anonymous", call{path: "/fn/payments/charge", body: `{"amount": 5}`}, 401, transport.CodeUnauthenticated, ""},
		{"empty body", call{path: "/fn/payments/charge", claims: user}, 403, transport.CodePermissionDenied, ""},
		{"malformed JSON", call{path: "/fn/payments/charge", body: `{"amount": `, claims: user}, 400, transport.CodeInvalidArgument, ""},
		{"trailing data", call{path: "/fn/payments/charge", body: `{"amount": 5} x`, claims: user}, 400, transport.CodeInvalidArgument, ""},
		{"not JSON whatever the type", call{path: "/fn/payments/charge", body: "amount=5", claims: user, headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 400, transport.CodeInvalidArgument, ""},
		{"JSON whatever the type", call{path: "/fn/payments/charge", body: `{"amount": 5}`, claims: user, headers: map[string]string{"Content-Type": "text/plain"}}, 200, "", "authz"},
		{"too deep", call{path: "/fn/payments/charge", body: strings.Repeat("[", 65), claims: user}, 400, transport.CodeInvalidArgument, ""},
		{"too large", call{path: "/fn/payments/charge", body: `{"amount": 5, "pad": "` + strings.Repeat("x", 128) + `"}`, claims: user}, 413, transport.CodeTooLarge, ""},
		{"large number", call{path: "/fn/payments/charge", body: `{"amount": 1e300}`, claims: user}, 403, transport.CodePermissionDenied, ""},
		{"small number", call{path: "/fn/payments/charge", body: `{"amount": -1e300}`, claims: user}, 200, "", "authz"},
		{"number out of range", call{path: "/fn/payments/charge", body: `{"amount": 1e999999999}`, claims: user}, 400, transport.CodeInvalidArgument, ""},
		{"number too long", call{path: "/fn/payments/charge", body: `{"amount": 1` + strings.Repeat("0", 100) + `}`, claims: user}, 400, transport.CodeInvalidArgument, ""},
		{"denied function", call{path: "/fn/payments/refund", body: `{"amount": 5}`, claims: user}, 403, transport.CodePermissionDenied, ""},
		{"default: body untouched", call{path: "/fn/orders/list", body: `not JSON at all`}, 200, "", ""},
		{"invalid service", call{path: "/fn/pay.ments/charge", claims: user}, 400, transport.CodeInvalidArgument, ""},
		{"invalid function", call{path: "/fn/payments/ch%20arge", claims: user}, 400, transport.CodeInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := do(t, srv, tt.call)
			if got.status != tt.status || got.errCode != tt.code {
				t.Fatalf("got %d %s (%q); want %d %s", got.status, got.errCode, got.body, tt.status, tt.code)
			}
			if got.status == 200 {
				if got.body != tt.call.body {
					t.Errorf("handler got body %q; want %q", got.body, tt.call.body)
				}
				if bt := got.header.Get("X-Body"); bt != tt.bodyType {
					t.Errorf("handler's body was %q; want %q", bt, tt.bodyType)
				}
			}
		})
	}
}

func TestMiddlewareRego(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz

default allow := false

allow if {
	input.http.method == "POST"
	input.http.path == sprintf("/fn/%s/%s", [input.service, input.function])
	input.http.headers == {"x-tenant": "t1"}
	input.caller == null
	input.auth.sub == "u1"
}

status := 418 if input.function == "teapot"

reason := "tenant t1 only" if not allow

headers["WWW-Authenticate"] := "Bearer" if input.auth == null

headers["Set-Cookie"] := "x=y"

allow if {
	input.function == "crash"
	to_number("x")
}
`
	var logged syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newAuthorizer(t, authz.Module("p.rego", policy), authz.WithClaims(testClaims), authz.WithHeaders("X-Tenant"), authz.WithLogger(log))
	srv := serve(t, a)
	tenant := map[string]string{"X-Tenant": "t1", "Authorization": "Bearer secret", "Cookie": "c=1", "X-Other": "o"}

	got := do(t, srv, call{path: "/fn/payments/charge", body: "not JSON", claims: `{"sub": "u1"}`, headers: tenant})
	if got.status != 200 || got.body != "not JSON" || got.header.Get("X-Body") != "" {
		t.Errorf("allowed call: got %d %q (body type %q); want 200 with the body untouched", got.status, got.body, got.header.Get("X-Body"))
	}
	if got.header.Get("Set-Cookie") != "" {
		t.Errorf("policy set a cookie: %v", got.header)
	}

	got = do(t, srv, call{path: "/fn/payments/charge", claims: `{"sub": "u1"}`, headers: map[string]string{"X-Tenant": "t2"}})
	if got.status != 403 || got.errMsg != "tenant t1 only" {
		t.Errorf("other tenant: got %d %q; want 403 with the policy's reason", got.status, got.errMsg)
	}

	got = do(t, srv, call{path: "/fn/payments/teapot"})
	if got.status != 418 || got.errMsg != "tenant t1 only" || got.header.Get("WWW-Authenticate") != "Bearer" || got.header.Get("Set-Cookie") != "" {
		t.Errorf("teapot: got %d %q %v; want 418 with the reason and WWW-Authenticate only", got.status, got.errMsg, got.header)
	}

	got = do(t, srv, call{path: "/fn/payments/crash", claims: `{"sub": "u2"}`})
	if got.status != 500 || got.errCode != transport.CodeInternal || strings.Contains(got.body, "to_number") {
		t.Errorf("evaluation error: got %d %q; want 500 with a generic body", got.status, got.body)
	}
	if !strings.Contains(logged.String(), "to_number") {
		t.Errorf("the error did not reach the logger: %q", logged.String())
	}
	if !strings.Contains(logged.String(), "Set-Cookie") {
		t.Errorf("the dropped header was not logged: %q", logged.String())
	}
}

func TestMiddlewareWithoutClaims(t *testing.T) {
	t.Parallel()
	// No WithClaims: everyone is anonymous, so authenticated rules deny.
	a := newAuthorizer(t, authz.RulesJSON([]byte(`{"services": {"default": {"functions": {"default": {"rule": {"rule": "authenticated"}}}}}}`)))
	srv := serve(t, a)
	if got := do(t, srv, call{path: "/fn/a/b", claims: `{"sub": "u1"}`}); got.status != 401 {
		t.Errorf("got %d; want 401", got.status)
	}
}

func TestMiddlewareRoute(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t,
		authz.Module("p.rego", "package funcmesh.authz\nallow if input.service == \"svc\"\n"),
		authz.WithRoute(func(r *http.Request) (string, string) {
			s, f, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/rpc/"), ".")
			return s, f
		}))
	srv := httptest.NewServer(a.Middleware(echo))
	t.Cleanup(srv.Close)
	for path, want := range map[string]int{"/rpc/svc.fn": 200, "/rpc/other.fn": 403, "/rpc/svc": 400, "/rpc/svc.a.b": 400} {
		if got := do(t, srv, call{path: path}); got.status != want {
			t.Errorf("%s: got %d; want %d", path, got.status, want)
		}
	}
}

func TestMiddlewareNotReady(t *testing.T) {
	t.Parallel()
	var a *authz.Authorizer
	srv := serve(t, a)
	if got := do(t, srv, call{path: "/fn/a/b"}); got.status != 500 || got.errCode != transport.CodeInternal {
		t.Errorf("nil Authorizer: got %d %s; want 500", got.status, got.errCode)
	}
}

// TestMiddlewareUpstreamLimit checks that a body limit set before the
// middleware (http.MaxBytesReader) answers 413 too.
func TestMiddlewareUpstreamLimit(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, authz.Module("p.rego", "package funcmesh.authz\nallow if input.params\n"))
	limit := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, 8)
			next.ServeHTTP(w, r)
		})
	}
	srv := serve(t, a, limit)
	if got := do(t, srv, call{path: "/fn/a/b", body: `{"a": "0123456789"}`}); got.status != 413 {
		t.Errorf("got %d; want 413", got.status)
	}
	if got := do(t, srv, call{path: "/fn/a/b", body: `true`}); got.status != 200 {
		t.Errorf("got %d; want 200", got.status)
	}
}

func TestBody(t *testing.T) {
	t.Parallel()
	data := []byte(`{"a": 1}`)
	b := authz.NewBody(data)
	half := make([]byte, 4)
	if n, err := b.Read(half); n != 4 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if !bytes.Equal(b.Bytes(), data) {
		t.Errorf("Bytes after a read = %q; want the whole body", b.Bytes())
	}
	var rest bytes.Buffer
	if _, err := io.Copy(&rest, b); err != nil || rest.String() != `: 1}` {
		t.Errorf("rest = %q, %v", rest.String(), err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	var v any
	if err := json.NewDecoder(authz.NewBody(data)).Decode(&v); err != nil {
		t.Errorf("decoding a Body: %v", err)
	}
}
