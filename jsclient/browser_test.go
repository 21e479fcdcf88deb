package jsclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/browsertest"
	"github.com/funcmesh/funcmesh/jsclient"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

var testSecret = []byte("jsclient-browser-test-secret-of-32-bytes+")

const rules = `{"services": {
  "greeter":  {"functions": {"default": {"rule": {"rule": "allow"}}}},
  "slow":     {"functions": {"default": {"rule": {"rule": "allow"}}}},
  "accounts": {"functions": {"default": {"rule": {"rule": "authenticated"}}}},
  "billing":  {"functions": {"default": {"rule": {"rule": "authenticated"}}}},
  "default":  {"functions": {"default": {"rule": {"rule": "deny"}}}}
}}`

// fixture is a whole mesh: an embedded broker, the services, the gateway
// behind the middleware chain on one origin, and pages on others.
type fixture struct {
	gateway *httptest.Server // the gateway, with a test page at /
	allowed *httptest.Server // a page on an origin the gateway's CORS allows
	other   *httptest.Server // a page on an origin it does not
	token   string
	// waiting receives once slow.wait has a call.
	waiting chan struct{}
}

// page is a test page that imports the module from its own origin and
// calls the gateway at gatewayURL ("" for its own origin).
func page(gatewayURL string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /js/", http.StripPrefix("/js", jsclient.Handler()))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>jsclient test</title>
<script type="module">
import * as m from "/js/funcmesh.js";
window.funcmesh = m;
window.mesh = m.createClient({baseURL: %q});
// attempt runs f and returns what happened as plain JSON.
window.attempt = async (f) => {
  try { return {ok: true, value: await f()}; }
  catch (e) { return {ok: false, isMeshError: e instanceof m.MeshError, name: e.name,
    code: e.code, status: e.status, message: e.message, requestId: e.requestId}; }
};
document.body.dataset.ready = "yes";
</script><body>`, gatewayURL)
	})
	return mux
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	testCtx := ctx
	b, err := broker.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	f := &fixture{waiting: make(chan struct{}, 8)}
	nc, err := b.NewConn("services")
	if err != nil {
		t.Fatal(err)
	}
	for name, fns := range map[string]map[string]mesh.Handler{
		"greeter": {"hello": mesh.Func(func(_ context.Context, in struct{ Name string }) (map[string]string, error) {
			return map[string]string{"greeting": "Hello, " + in.Name + "!"}, nil
		})},
		"accounts": {"me": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			claims, _ := c.Claims()
			return json.Marshal(map[string]any{"user": claims["sub"]})
		})},
		"slow": {"wait": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			f.waiting <- struct{}{}
			select {
			case <-ctx.Done(): // the call's deadline
			case <-testCtx.Done(): // the test's end: the services stop
			}
			return nil, transport.NewError(transport.CodeDeadlineExceeded, "waited")
		})},
	} {
		svc, err := mesh.NewService(nc, name)
		if err != nil {
			t.Fatal(err)
		}
		for fn, h := range fns {
			if err := svc.Handle(fn, h); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	}

	f.allowed = httptest.NewServer(nil)
	f.other = httptest.NewServer(nil)
	t.Cleanup(f.allowed.Close)
	t.Cleanup(f.other.Close)

	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: testSecret}},
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(rules)))
	if err != nil {
		t.Fatal(err)
	}
	cors, err := middleware.CORS(middleware.CORSOptions{
		AllowedOrigins: []string{f.allowed.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := mesh.NewGateway(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	chain := alice.New(middleware.RequestID, cors, middleware.JWT(verifier), policy.Middleware)
	mux := http.NewServeMux()
	mux.Handle("/fn/{service}/{function}", chain.Then(gw))
	mux.Handle("/", page(""))
	f.gateway = httptest.NewServer(mux)
	t.Cleanup(f.gateway.Close)
	f.allowed.Config.Handler = page(f.gateway.URL)
	f.other.Config.Handler = page(f.gateway.URL)

	f.token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ada", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// outcome is what window.attempt returns.
type outcome struct {
	OK          bool            `json:"ok"`
	Value       json.RawMessage `json:"value"`
	IsMeshError bool            `json:"isMeshError"`
	Name        string          `json:"name"`
	Code        string          `json:"code"`
	Status      int             `json:"status"`
	Message     string          `json:"message"`
	RequestID   string          `json:"requestId"`
}

func (o outcome) String() string {
	if o.OK {
		return "ok " + string(o.Value)
	}
	return fmt.Sprintf("%s %s %d %q request %q", o.Name, o.Code, o.Status, o.Message, o.RequestID)
}

func open(t *testing.T, url string) *browsertest.Tab {
	t.Helper()
	tab := browsertest.NewTab(t)
	tab.Run(t, 20*time.Second,
		chromedp.Navigate(url),
		chromedp.WaitReady(chromedp.CSS(`body[data-ready="yes"]`)))
	return tab
}

func attempt(t *testing.T, tab *browsertest.Tab, js string) outcome {
	t.Helper()
	return browsertest.Eval[outcome](t, tab, 20*time.Second, "attempt(() => "+js+")")
}

func TestBrowserCalls(t *testing.T) {
	f := newFixture(t)
	tab := open(t, f.gateway.URL+"/")
	tokenJS := fmt.Sprintf("%q", f.token)

	wantError := func(t *testing.T, got outcome, code string, status int) {
		t.Helper()
		if got.OK || !got.IsMeshError || got.Name != "MeshError" || got.Code != code || got.Status != status {
			t.Fatalf("got %v; want a MeshError %s %d", got, code, status)
		}
	}
	validID := func(t *testing.T, got outcome) {
		t.Helper()
		if got.RequestID == "" || !reqctx.ValidRequestID(got.RequestID) {
			t.Errorf("request ID %q; want the gateway's", got.RequestID)
		}
	}

	t.Run("success", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("greeter", "hello", {Name: "Ada"})`)
		if !got.OK || string(got.Value) != `{"greeting":"Hello, Ada!"}` {
			t.Fatalf("got %v; want ok {\"greeting\":\"Hello, Ada!\"}", got)
		}
	})
	t.Run("token function", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("accounts", "me", undefined, {token: async () => `+tokenJS+`})`)
		if !got.OK || string(got.Value) != `{"user":"ada"}` {
			t.Fatalf("got %v; want ok {\"user\":\"ada\"}", got)
		}
	})
	t.Run("401", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("accounts", "me", undefined, {headers: {"X-Request-Id": "browser-401"}})`)
		wantError(t, got, "unauthenticated", 401)
		if got.RequestID != "browser-401" {
			t.Errorf("request ID %q; want browser-401, the one the page sent", got.RequestID)
		}
		got = attempt(t, tab, `mesh.call("accounts", "me", undefined, {token: "not.a.jwt"})`)
		wantError(t, got, "unauthenticated", 401)
		validID(t, got)
	})
	t.Run("403", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("secrets", "read", {}, {token: `+tokenJS+`})`)
		wantError(t, got, "permission_denied", 403)
		validID(t, got)
	})
	t.Run("503", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("billing", "invoices", {}, {token: `+tokenJS+`})`)
		wantError(t, got, "unavailable", 503)
		validID(t, got)
	})
	t.Run("504 timeout", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("slow", "wait", {}, {timeout: 300})`)
		wantError(t, got, "deadline_exceeded", 504)
		validID(t, got)
		<-f.waiting
	})
	t.Run("abort", func(t *testing.T) {
		browsertest.Eval[bool](t, tab, 5*time.Second, `(() => {
			window.ctl = new AbortController();
			window.pending = attempt(() => mesh.call("slow", "wait", {}, {signal: ctl.signal}));
			return true; })()`)
		select {
		case <-f.waiting: // the call is in flight
		case <-time.After(10 * time.Second):
			t.Fatal("slow.wait got no call")
		}
		got := browsertest.Eval[outcome](t, tab, 10*time.Second, `(ctl.abort(), pending)`)
		wantError(t, got, "canceled", 0)
	})
	t.Run("bad name", func(t *testing.T) {
		got := attempt(t, tab, `mesh.call("greeter", "../admin", {})`)
		wantError(t, got, "invalid_argument", 0)
	})
}

func TestBrowserCrossOrigin(t *testing.T) {
	f := newFixture(t)
	tokenJS := fmt.Sprintf("%q", f.token)

	t.Run("allowed origin with a token", func(t *testing.T) {
		tab := open(t, f.allowed.URL+"/")
		got := attempt(t, tab, `mesh.call("accounts", "me", undefined, {token: `+tokenJS+`, timeout: 5000})`)
		if !got.OK || string(got.Value) != `{"user":"ada"}` {
			t.Fatalf("got %v; want ok {\"user\":\"ada\"}", got)
		}
		// Errors are readable too: CORS headers are on them, and the
		// request ID header is exposed.
		got = attempt(t, tab, `mesh.call("accounts", "me")`)
		if got.Code != "unauthenticated" || got.Status != 401 || got.RequestID == "" {
			t.Fatalf("got %v; want unauthenticated 401 with a request ID", got)
		}
	})
	t.Run("other origin refused", func(t *testing.T) {
		tab := open(t, f.other.URL+"/")
		got := attempt(t, tab, `mesh.call("accounts", "me", undefined, {token: `+tokenJS+`})`)
		if got.OK || got.Code != "network" || got.Status != 0 || !strings.Contains(got.Message, "CORS") {
			t.Fatalf("got %v; want a network MeshError (the browser withholds the answer)", got)
		}
	})
}
