package mesh_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

// deadlines is what the "deadline" function saw: the Mesh-Deadline header
// as the call read it and its context's deadline, in Unix ms.
type deadlines struct {
	Header  int64 `json:"header"`
	Context int64 `json:"context"`
}

// timeoutEnv is a gateway whose Client waits gatewayMax at most, in front
// of a service that reports its deadline ("deadline") or waits for it
// ("wait"); calls counts the calls that reached the service.
func timeoutEnv(t *testing.T, gatewayMax time.Duration, wrap func(http.Handler) http.Handler) (*env, *atomic.Int64) {
	t.Helper()
	e := newEnv(t, wrap, mesh.WithTimeout(gatewayMax))
	var calls atomic.Int64
	e.service(t, "clock", map[string]mesh.Handler{
		"deadline": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			calls.Add(1)
			d, _ := ctx.Deadline()
			return json.Marshal(deadlines{Header: c.Deadline().UnixMilli(), Context: d.UnixMilli()})
		}),
		"wait": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			calls.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	})
	return e, &calls
}

// deadlineOf calls clock.deadline with hdr and returns how far in the
// future the function's deadline was: between the two values, which
// bracket the call.
func deadlineOf(t *testing.T, e *env, hdr ...string) (lo, hi time.Duration) {
	t.Helper()
	start := time.Now()
	res := e.post(t, "clock", "deadline", `{}`, hdr...)
	end := time.Now()
	var d deadlines
	if err := json.Unmarshal(res.body, &d); res.status != 200 || err != nil {
		t.Fatalf("clock.deadline %v: %d %s (%v)", hdr, res.status, res.body, err)
	}
	if d.Header != d.Context {
		t.Errorf("Mesh-Deadline %d, context deadline %d; want the same", d.Header, d.Context)
	}
	at := time.UnixMilli(d.Header)
	// Mesh-Deadline is in whole milliseconds, rounded down.
	return at.Sub(end), at.Sub(start) + time.Millisecond
}

func TestGatewayCallerTimeout(t *testing.T) {
	t.Parallel()
	const gatewayMax = 20 * time.Second
	e, _ := timeoutEnv(t, gatewayMax, nil)

	tests := []struct {
		name   string
		header string // "" sends none
		want   time.Duration
	}{
		{"no header: the gateway's maximum", "", gatewayMax},
		{"shorter: the caller's", "1500", 1500 * time.Millisecond},
		{"one millisecond less than the maximum", strconv.Itoa(int(gatewayMax/time.Millisecond) - 1), gatewayMax - time.Millisecond},
		{"longer: never extends the maximum", "60000", gatewayMax},
		{"far longer", "9999999999", gatewayMax},
	}
	for _, tt := range tests {
		var hdr []string
		if tt.header != "" {
			hdr = []string{transport.HeaderTimeoutMs, tt.header}
		}
		lo, hi := deadlineOf(t, e, hdr...)
		if tt.want < lo || tt.want > hi {
			t.Errorf("%s: the function's deadline was %v to %v away; want %v", tt.name, lo, hi, tt.want)
		}
	}
}

// TestGatewayCallerTimeoutUnderRequestDeadline: when the request's context
// has a deadline (http.TimeoutHandler, a server's own), that is the
// maximum the header cannot extend.
func TestGatewayCallerTimeoutUnderRequestDeadline(t *testing.T) {
	t.Parallel()
	const requestMax = 4 * time.Second
	withDeadline := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), requestMax)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	e, _ := timeoutEnv(t, time.Minute, withDeadline)
	for header, want := range map[string]time.Duration{"500": 500 * time.Millisecond, "60000": requestMax} {
		lo, hi := deadlineOf(t, e, transport.HeaderTimeoutMs, header)
		if want < lo || want > hi {
			t.Errorf("%s: %s under a request deadline of %v: the function's deadline was %v to %v away; want %v", transport.HeaderTimeoutMs, header, requestMax, lo, hi, want)
		}
	}
}

// TestGatewayCallerTimeoutExpires: a function still running when the
// caller's timeout passes is a 504, long before the gateway's maximum.
func TestGatewayCallerTimeoutExpires(t *testing.T) {
	t.Parallel()
	e, calls := timeoutEnv(t, time.Minute, nil)
	start := time.Now()
	res := e.post(t, "clock", "wait", `{}`, transport.HeaderTimeoutMs, "50")
	if res.status != http.StatusGatewayTimeout || res.errCode() != transport.CodeDeadlineExceeded {
		t.Fatalf("wait with %s 50: %d %s; want 504 deadline_exceeded", transport.HeaderTimeoutMs, res.status, res.body)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the 504 came after %v: the gateway's one-minute maximum, not the caller's 50 ms", took)
	}
	if calls.Load() != 1 {
		t.Errorf("the function ran %d times; want 1", calls.Load())
	}
}

func TestGatewayCallerTimeoutInvalid(t *testing.T) {
	t.Parallel()
	e, calls := timeoutEnv(t, time.Minute, nil)
	for _, v := range []string{"", "0", "-5", "+5", "1.5", "1e3", "5s", "5 5", "0x10", "10000000000", strings.Repeat("9", 40), "５"} {
		res := e.post(t, "clock", "deadline", `{}`, transport.HeaderTimeoutMs, v)
		if res.status != http.StatusBadRequest || res.errCode() != transport.CodeInvalidArgument || !strings.Contains(res.errMessage(), transport.HeaderTimeoutMs) {
			t.Errorf("%s: %q: %d %s; want 400 invalid_argument naming the header", transport.HeaderTimeoutMs, v, res.status, res.body)
		}
	}

	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/fn/clock/deadline", strings.NewReader(`{}`))
	req.Header.Add(transport.HeaderTimeoutMs, "100")
	req.Header.Add(transport.HeaderTimeoutMs, "60000")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("two %s headers: %d; want 400", transport.HeaderTimeoutMs, res.StatusCode)
	}
	if calls.Load() != 0 {
		t.Errorf("the function ran %d times for calls with a bad %s; want 0", calls.Load(), transport.HeaderTimeoutMs)
	}
}

// TestCORSAllowsTimeoutHeader: a page on another origin may send the
// header (its preflight names it), with the CORS middleware's defaults.
func TestCORSAllowsTimeoutHeader(t *testing.T) {
	t.Parallel()
	cors, err := middleware.CORS(middleware.CORSOptions{AllowedOrigins: []string{"https://app.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	h := cors(http.NotFoundHandler())
	req := httptest.NewRequest(http.MethodOptions, "/fn/clock/deadline", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "content-type,mesh-timeout-ms")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if got := strings.ToLower(w.Header().Get("Access-Control-Allow-Headers")); !strings.Contains(got, "mesh-timeout-ms") {
		t.Errorf("preflight for %s: %d, Access-Control-Allow-Headers %q; want it allowed", transport.HeaderTimeoutMs, w.Code, got)
	}
}

// FuzzGatewayTimeout sends calls with arbitrary Mesh-Timeout-Ms values
// through the gateway: a value ParseTimeout accepts makes a call whose
// Mesh-Deadline is the sooner of the caller's timeout and the gateway's
// maximum; any other is answered 400 and sends nothing.
func FuzzGatewayTimeout(f *testing.F) {
	for _, s := range []string{"1", "2500", "60000", "0", "-1", "1.5", "9999999999", "10000000000", "\x00", "1\r\nX: y"} {
		f.Add(s)
	}
	const gatewayMax = 5 * time.Second
	s := natstest.Start(f, nil)
	sub := natstest.Connect(f, s)
	var received atomic.Int64
	if _, err := sub.Subscribe("fn.>", func(m *nats.Msg) {
		received.Add(1)
		_ = m.Respond([]byte(m.Header.Get(transport.HeaderDeadline)))
	}); err != nil {
		f.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		f.Fatal(err)
	}
	gw, err := mesh.NewGateway(natstest.Connect(f, s), mesh.WithTimeout(gatewayMax))
	if err != nil {
		f.Fatal(err)
	}
	gw.Route = func(*http.Request) (string, string) { return "clock", "deadline" }
	f.Fuzz(func(t *testing.T, v string) {
		before := received.Load()
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		req.Header[transport.HeaderTimeoutMs] = []string{v}
		rec := httptest.NewRecorder()
		start := time.Now()
		gw.ServeHTTP(rec, req)
		end := time.Now()
		d, perr := transport.ParseTimeout(v)
		if perr != nil {
			if rec.Code != http.StatusBadRequest || received.Load() != before {
				t.Fatalf("%s %q: %d %s, %d messages sent; want 400 and none", transport.HeaderTimeoutMs, v, rec.Code, rec.Body, received.Load()-before)
			}
			return
		}
		if rec.Code == http.StatusGatewayTimeout && time.Since(start) >= d {
			return // a timeout of a few milliseconds may pass before the reply
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %q: %d %s; want 200", transport.HeaderTimeoutMs, v, rec.Code, rec.Body)
		}
		at, err := transport.ParseDeadline(rec.Body.String())
		if err != nil {
			t.Fatalf("%s %q: Mesh-Deadline %q: %v", transport.HeaderTimeoutMs, v, rec.Body, err)
		}
		want := min(d, gatewayMax)
		if lo, hi := start.Add(want-time.Millisecond), end.Add(want); at.Before(lo) || at.After(hi) {
			t.Fatalf("%s %q: Mesh-Deadline %v; want %v from the call, %v to %v", transport.HeaderTimeoutMs, v, at, want, lo, hi)
		}
	})
}
