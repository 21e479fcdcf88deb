package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/dashboard"
	"github.com/funcmesh/funcmesh/internal/browsertest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// newMesh starts an embedded broker and returns it with a client on it.
func newMesh(t *testing.T) (*broker.Broker, *mesh.Client) {
	t.Helper()
	b, err := broker.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := mesh.NewClient(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

// startAlpha runs the service alpha: ok answers, boom always fails.
func startAlpha(t *testing.T, b *broker.Broker, version string) *mesh.Service {
	t.Helper()
	nc, err := b.NewConn("alpha")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mesh.NewService(nc, "alpha", mesh.WithVersion(version))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	ok := mesh.Func(func(context.Context, struct{}) (string, error) { return "fine", nil })
	boom := mesh.Func(func(context.Context, struct{}) (string, error) {
		return "", transport.NewError(transport.CodeUnprocessable, "boom: the answer is no")
	})
	if err := svc.Handle("ok", ok); err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle("boom", boom); err != nil {
		t.Fatal(err)
	}
	return svc
}

// call makes n calls of alpha.fn.
func call(t *testing.T, c *mesh.Client, fn string, n int) {
	t.Helper()
	for range n {
		_, err := c.Invoke(t.Context(), "alpha", fn, []byte(`{}`))
		if fn == "boom" && transport.CodeOf(err) != transport.CodeUnprocessable {
			t.Fatalf("alpha.boom: %v; want unprocessable", err)
		}
		if fn == "ok" && err != nil {
			t.Fatalf("alpha.ok: %v", err)
		}
	}
}

func newDashboard(t *testing.T, nc *nats.Conn, refresh time.Duration) *dashboard.Handler {
	t.Helper()
	d, err := dashboard.New(nc, dashboard.Options{MinInterval: time.Nanosecond, Refresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// poll takes snapshots until cond holds, for at most 10 seconds.
func poll(t *testing.T, d *dashboard.Handler, cond func(*dashboard.Snapshot) bool) *dashboard.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := d.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(s, "", "  ")
			t.Fatalf("the dashboard never showed what was expected; last snapshot:\n%s", b)
		}
	}
}

func service(s *dashboard.Snapshot, name string) *dashboard.Service {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i]
		}
	}
	return nil
}

func function(s *dashboard.Service, name string) *dashboard.Function {
	for i := range s.Functions {
		if s.Functions[i].Name == name {
			return &s.Functions[i]
		}
	}
	return nil
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	b, c := newMesh(t)
	d := newDashboard(t, b.Conn(), 0)

	if s, err := d.Snapshot(t.Context()); err != nil || len(s.Services) != 0 {
		t.Fatalf("empty bus: %+v, %v; want no services", s, err)
	}

	before := time.Now()
	a1 := startAlpha(t, b, "1.2.0")
	a2 := startAlpha(t, b, "1.3.0")
	call(t, c, "ok", 4)
	call(t, c, "boom", 3)

	// A plain micro service (as one in another language would be) on the
	// mesh's subjects: its latency comes from micro's processing time.
	nc, err := b.NewConn("legacy")
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := micro.AddService(nc, micro.Config{Name: "legacy", Version: "0.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = legacy.Stop() })
	err = legacy.AddEndpoint("echo", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond(r.Data()) }),
		micro.WithEndpointSubject("fn.legacy.echo"))
	if err != nil {
		t.Fatal(err)
	}
	// The subscription is the server's once a round trip has passed.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Invoke(t.Context(), "legacy", "echo", []byte(`"hi"`)); err != nil {
			t.Fatal(err)
		}
	}

	s := poll(t, d, func(s *dashboard.Snapshot) bool {
		a, l := service(s, "alpha"), service(s, "legacy")
		if a == nil || l == nil || len(a.Instances) != 2 {
			return false
		}
		ok, boom, echo := function(a, "ok"), function(a, "boom"), function(l, "echo")
		return ok != nil && ok.Calls == 4 && boom != nil && boom.Errors == 3 && echo != nil && echo.Calls == 2
	})

	a := service(s, "alpha")
	want := map[string]string{a1.ID(): "1.2.0", a2.ID(): "1.3.0"}
	for _, in := range a.Instances {
		if want[in.ID] != in.Version {
			t.Errorf("instance %s version %q; want %q", in.ID, in.Version, want[in.ID])
		}
		if in.Started.Before(before.Add(-time.Second)) || in.Started.After(time.Now()) {
			t.Errorf("instance %s started %v; want after %v", in.ID, in.Started, before)
		}
	}
	ok, boom := function(a, "ok"), function(a, "boom")
	if ok.Errors != 0 || !ok.LatencyKnown || ok.AvgLatency <= 0 {
		t.Errorf("alpha.ok %+v; want 0 errors and a known latency above 0 (mesh.EndpointStats.ProcessingTime)", ok)
	}
	if boom.Calls != 3 {
		t.Errorf("alpha.boom %+v; want 3 calls", boom)
	}
	echo := function(service(s, "legacy"), "echo")
	if !echo.LatencyKnown || echo.AvgLatency <= 0 || echo.Errors != 0 {
		t.Errorf("legacy.echo %+v; want a known latency above 0 and no errors", echo)
	}
	if l := service(s, "legacy"); l.Instances[0].Version != "0.9.0" || l.Instances[0].Started.IsZero() {
		t.Errorf("legacy instance %+v; want version 0.9.0 and a start time", l.Instances[0])
	}

	// A stopped instance leaves the listing.
	if err := a1.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	poll(t, d, func(s *dashboard.Snapshot) bool {
		a := service(s, "alpha")
		return a != nil && len(a.Instances) == 1 && a.Instances[0].ID == a2.ID()
	})
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	b, c := newMesh(t)
	startAlpha(t, b, "1.0.0")
	call(t, c, "boom", 1)
	srv := httptest.NewServer(newDashboard(t, b.Conn(), 0))
	t.Cleanup(srv.Close)

	get := func(t *testing.T, method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}
	// getShowing GETs path until the body shows want: each page takes
	// its own discovery round, which a loaded machine can make miss an
	// instance now and then.
	getShowing := func(t *testing.T, path, want string) (*http.Response, string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, body := get(t, "GET", path)
			if strings.Contains(body, want) || time.Now().After(deadline) {
				return res, body
			}
		}
	}

	t.Run("page", func(t *testing.T) {
		res, body := getShowing(t, "/", `data-service="alpha"`)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		csp := res.Header.Get("Content-Security-Policy")
		m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'`).FindStringSubmatch(csp)
		if m == nil || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("CSP %q; want default-src 'none', a script nonce, frame-ancestors 'none'", csp)
		}
		if !strings.Contains(body, `<script nonce="`+m[1]+`">`) || !strings.Contains(body, `data-service="alpha"`) {
			t.Errorf("the page lacks the script with the CSP's nonce or the service:\n%s", body)
		}
		if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
			t.Error("the page loads something from another origin")
		}
		_, again := get(t, "GET", "/")
		if strings.Contains(again, m[1]) {
			t.Error("two pages share a nonce")
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q; want no-store", res.Header.Get("Cache-Control"))
		}
	})
	t.Run("content", func(t *testing.T) {
		_, body := getShowing(t, "/?view=content", `data-function="alpha.boom"`)
		if strings.Contains(body, "<html") || !strings.Contains(body, `data-function="alpha.boom"`) {
			t.Errorf("?view=content: want the content only:\n%s", body)
		}
	})
	t.Run("escaping", func(t *testing.T) {
		// The last error is the service's own text: it must not become
		// markup in the operator's browser.
		nc, err := b.NewConn("legacy")
		if err != nil {
			t.Fatal(err)
		}
		legacy, err := micro.AddService(nc, micro.Config{Name: "legacy", Version: "0.9.0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = legacy.Stop() })
		err = legacy.AddEndpoint("fail", micro.HandlerFunc(func(r micro.Request) {
			_ = r.Error("500", `<img src=x onerror="alert(1)"> & more`, nil)
		}), micro.WithEndpointSubject("fn.legacy.fail"))
		if err != nil {
			t.Fatal(err)
		}
		// The subscription is the server's once a round trip has passed.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Invoke(t.Context(), "legacy", "fail", nil); transport.CodeOf(err) != transport.CodeInternal {
			t.Fatalf("legacy.fail: %v; want internal", err)
		}
		_, body := getShowing(t, "/", `data-service="legacy"`)
		if !strings.Contains(body, `&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; more`) || strings.Contains(body, "<img") {
			t.Errorf("the last error is not escaped:\n%s", body)
		}
	})
	t.Run("json", func(t *testing.T) {
		res, body := getShowing(t, "/?format=json", `"alpha"`)
		var s dashboard.Snapshot
		if res.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &s) != nil || service(&s, "alpha") == nil {
			t.Errorf("?format=json: %s %s", res.Header.Get("Content-Type"), body)
		}
	})
	t.Run("methods", func(t *testing.T) {
		res, body := get(t, "POST", "/")
		if res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(body, `"code"`) {
			t.Errorf("POST: %d %q %s; want 405, Allow: GET, HEAD and the JSON error", res.StatusCode, res.Header.Get("Allow"), body)
		}
		res, body = get(t, "HEAD", "/")
		if res.StatusCode != 200 || body != "" {
			t.Errorf("HEAD: %d %q", res.StatusCode, body)
		}
	})
}

func TestNew(t *testing.T) {
	if _, err := dashboard.New(nil, dashboard.Options{}); err == nil {
		t.Error("New(nil): no error")
	}
	b, _ := newMesh(t)
	if _, err := dashboard.New(b.Conn(), dashboard.Options{Prefix: "bad prefix"}); err == nil {
		t.Error("a bad prefix: no error")
	}
}

// newTasksMesh starts a broker with JetStream, durable calls with a
// dispatcher, and the service orders, whose ship fails until fixed is
// set; a task of it gets one attempt, so it is a dead letter at once.
func newTasksMesh(t *testing.T) (*broker.Broker, *tasks.Tasks, *atomic.Bool) {
	t.Helper()
	ctx := t.Context()
	b, err := broker.Start(ctx, broker.WithJetStream(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k1", Secret: []byte("the-host-claims-key-at-least-32-bytes")})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tasks.New(ctx, b.Conn(), tasks.Options{Signer: signer, Memory: true,
		Functions: map[string]tasks.Retry{"orders.ship": {MaxAttempts: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := mesh.NewClient(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	nc, err := b.NewConn("orders")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mesh.NewService(nc, "orders")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	fixed := new(atomic.Bool)
	err = svc.Handle("ship", mesh.Func(func(context.Context, struct{ Order int }) (string, error) {
		if !fixed.Load() {
			return "", transport.NewError(transport.CodeUnavailable, "warehouse closed")
		}
		return "shipped", nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b, q, fixed
}

// TestReplayCrossOrigin: the replay button is a form POST, so a page on
// another site could post it with the operator's cookies; it must not.
func TestReplayCrossOrigin(t *testing.T) {
	t.Parallel()
	b, q, _ := newTasksMesh(t)
	dash, err := dashboard.New(b.Conn(), dashboard.Options{Tasks: q})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dash)
	t.Cleanup(srv.Close)
	rc, err := q.Enqueue(t.Context(), tasks.Call{Service: "orders", Function: "ship", Params: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	post := func(hdr ...string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/", strings.NewReader("replay="+rc.ID))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, hdr := range [][]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}} {
		if got := post(hdr...); got != http.StatusForbidden {
			t.Errorf("POST with %s: %d; want 403", hdr[0]+": "+hdr[1], got)
		}
	}
	if got := post("Sec-Fetch-Site", "same-origin", "X-Bad", ""); got != http.StatusNotFound && got != http.StatusSeeOther {
		t.Errorf("same-origin POST: %d; want 303, or 404 while the task is not dead yet", got)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/", strings.NewReader("replay=../../x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 400 {
		t.Errorf("POST of a bad ID: %v %v; want 400", res.StatusCode, err)
	}
}
