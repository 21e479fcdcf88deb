package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/meshtest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

const (
	// callTimeout is the deadline the gateways give calls unless a test
	// picks another: several seconds, so that "fast" (a quarter of it)
	// is a bound a loaded machine still meets.
	callTimeout = 8 * time.Second

	// slack is how long past its deadline a call may take to be answered
	// before it counts as hung.
	slack = 10 * time.Second

	// bodyLimit is the BodyLimit of the test chains.
	bodyLimit = 64 << 10
)

// fast is the bound on an answer that must come at once rather than at
// the deadline (503 when nothing runs, 429 at capacity).
func fast(timeout time.Duration) time.Duration { return timeout / 4 }

// secret signs the test tokens (HS256).
var secret = []byte("reliability-tests-hmac-secret-0123456789")

// signer is the hosts' signer of the claims they forward.
var signer = func() *transport.ClaimsSigner {
	s, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "reliability", Secret: []byte("reliability-claims-key-0123456789abcdef")})
	if err != nil {
		panic(err)
	}
	return s
}()

func TestMain(m *testing.M) {
	code := m.Run()
	meshtest.Cleanup()
	os.Exit(code)
}

// startBroker starts an embedded broker listening on loopback, shut down
// at cleanup.
func startBroker(t testing.TB, opts ...broker.StartOption) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, append([]broker.StartOption{broker.WithListen("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// startEcho runs an echosvc process serving service name (with the extra
// functions count, error and panic) against the NATS server at url.
func startEcho(t testing.TB, url, name string, args ...string) *meshtest.Proc {
	t.Helper()
	return meshtest.Start(t, url, append([]string{"-name", name, "-extras"}, args...)...)
}

// withCreds returns url with the user and password of creds in it, the
// way echosvc (nats.Connect) takes them.
func withCreds(t testing.TB, raw string, creds broker.Credentials) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(creds.User, creds.Password)
	return u.String()
}

// allowAll is a rule config that allows every call: a constant decision,
// so the chain costs little under load.
const allowAll = `{"services": {"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`

// gatewayConfig says how newGateway builds the HTTP side.
type gatewayConfig struct {
	// Policy is the authz sources and options; nil allows every call.
	Policy []authz.Option
	// BodyLimit is the BodyLimit middleware's bound; 0 means bodyLimit.
	BodyLimit int64
	// Timeout is the calls' deadline; 0 means callTimeout.
	Timeout time.Duration
	// MaxInFlight is the gateway's bound on calls in flight.
	MaxInFlight int
	// Server adjusts the http.Server before it starts.
	Server func(*http.Server)
	// Client holds more options for the gateway's client.
	Client []mesh.ClientOption
	// Bare mounts the gateway behind RequestID only.
	Bare bool
	// RouterConn, when set, is the connection the router of nested calls
	// runs on instead of the gateway's.
	RouterConn *nats.Conn
	// Cookie names a cookie the JWT middleware reads the token from, and
	// TrustedOrigins the origins that may use it cross-origin.
	Cookie         string
	TrustedOrigins []string
	// Tracing puts middleware.Tracing (no provider: the incoming trace
	// context is carried on) in the chain, after RequestID.
	Tracing bool
}

// gateway is the chain a host mounts, served over loopback: RequestID,
// Recover, BodyLimit, JWT, authz, mesh.Gateway at /fn/{service}/{function}.
type gateway struct {
	handler http.Handler // the mux with the chain, for fuzz tests to call directly
	url     string
	srv     *httptest.Server
	gw      *mesh.Gateway
	router  *mesh.Router
	policy  *authz.Authorizer
	client  *http.Client
	timeout time.Duration
}

// newGateway mounts the chain over nc. The http.Server has the timeouts
// recommended in .readme/reliability.md unless cfg.Server changes them.
func newGateway(t testing.TB, nc *nats.Conn, cfg gatewayConfig) *gateway {
	t.Helper()
	g := &gateway{timeout: cfg.Timeout}
	if g.timeout == 0 {
		g.timeout = callTimeout
	}
	limit := cfg.BodyLimit
	if limit == 0 {
		limit = bodyLimit
	}
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys:           []middleware.JWTKey{{Algorithm: "HS256", Key: secret}},
		Cookie:         cfg.Cookie,
		TrustedOrigins: cfg.TrustedOrigins,
	})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	var popts []authz.Option
	if cfg.Policy == nil {
		popts = append(popts, authz.RulesJSON([]byte(allowAll)))
	}
	popts = append(popts, cfg.Policy...)
	g.policy, err = authz.New(context.Background(), popts...)
	if err != nil {
		t.Fatalf("authz.New: %v", err)
	}
	t.Cleanup(func() { _ = g.policy.Close() })
	g.gw, err = mesh.NewGateway(nc, append([]mesh.ClientOption{mesh.WithTimeout(g.timeout), mesh.WithClaimsSigner(signer)}, cfg.Client...)...)
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	// Nested calls pass the same policy, through a router of the host.
	rnc := nc
	if cfg.RouterConn != nil {
		rnc = cfg.RouterConn
	}
	g.router, err = mesh.NewRouter(rnc, g.policy.AuthorizeCall, mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.router.Stop(ctx)
	})
	g.gw.MaxInFlight = cfg.MaxInFlight

	chain := alice.New(middleware.RequestID)
	if cfg.Tracing {
		chain = chain.Append(middleware.Tracing(middleware.TracingOptions{}))
	}
	chain = chain.Append(
		middleware.Recover(nil),
		middleware.BodyLimit(limit),
		middleware.JWT(verifier),
		g.policy.Middleware,
	)
	if cfg.Bare {
		chain = alice.New(middleware.RequestID)
	}
	mux := http.NewServeMux()
	// No method in the pattern, as CORS needs; the gateway answers 405
	// to anything but POST.
	mux.Handle("/fn/{service}/{function}", chain.Then(g.gw))
	g.handler = mux
	g.srv = httptest.NewUnstartedServer(mux)
	recommendedTimeouts(g.srv.Config, g.timeout)
	if cfg.Server != nil {
		cfg.Server(g.srv.Config)
	}
	g.srv.Start()
	g.url = g.srv.URL
	g.client = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}}
	t.Cleanup(func() {
		g.client.CloseIdleConnections()
		g.srv.Close()
	})
	return g
}

// recommendedTimeouts sets the http.Server limits .readme/reliability.md
// recommends for a server in front of a gateway whose calls time out
// after callTimeout.
func recommendedTimeouts(s *http.Server, callTimeout time.Duration) {
	s.ReadHeaderTimeout = 5 * time.Second         // slow headers (slow loris)
	s.ReadTimeout = 30 * time.Second              // slow bodies: headers + the largest body at the slowest speed you serve
	s.WriteTimeout = callTimeout + 10*time.Second // longer than any call, or answers are cut
	s.IdleTimeout = 2 * time.Minute               // idle keep-alive connections
	s.MaxHeaderBytes = 64 << 10                   // 431 above this
}

// answer is what an HTTP caller got.
type answer struct {
	status int
	header http.Header
	body   []byte
	dur    time.Duration
	err    error // no answer at all: a broken connection, or hung past the deadline
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("no answer after %v: %v", a.dur.Round(time.Millisecond), a.err)
	}
	return fmt.Sprintf("%d after %v: %s", a.status, a.dur.Round(time.Millisecond), bytes.TrimSpace(a.body))
}

// code returns the error code of a JSON error body, "" if none.
func (a answer) code() transport.Code {
	e, _, err := transport.ParseHTTPError(a.status, a.body)
	if err != nil {
		return ""
	}
	return e.Code()
}

// post calls service.function through the gateway with body; hdr are
// header name, value pairs ("Authorization" takes a token as it is).
func (g *gateway) post(service, function, body string, hdr ...string) answer {
	return g.do(http.MethodPost, "/fn/"+service+"/"+function, strings.NewReader(body), hdr...)
}

// do sends a request and waits for its answer at most the call timeout
// plus slack: longer is a hang.
func (g *gateway) do(method, path string, body io.Reader, hdr ...string) answer {
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout+slack)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, body)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return g.send(req)
}

func (g *gateway) send(req *http.Request) answer {
	start := time.Now()
	res, err := g.client.Do(req)
	if err != nil {
		return answer{err: err, dur: time.Since(start)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: b, dur: time.Since(start), err: err}
}

// leaks are bits of text that would betray internals in an error body:
// NATS and OPA errors, Go stack traces, file positions, and the text the
// echosvc error and panic functions fail with.
var leaks = []string{"nats:", "nats-server", "rego", "eval_", "builtin", "goroutine", ".go:", "panic:", "runtime.", "internal detail", "/srv/secret"}

// cleanError returns what is wrong with an error answer: it must be the
// JSON error body of transport.WriteHTTPError, carry the request ID of the
// X-Request-Id header, and hold no internal text.
func cleanError(a answer) error {
	if a.err != nil {
		return fmt.Errorf("no answer: %v", a.err)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("status %d with Content-Type %q; want application/json: %s", a.status, ct, a.body)
	}
	e, id, err := transport.ParseHTTPError(a.status, a.body)
	if err != nil {
		return fmt.Errorf("status %d with a body that is not a JSON error (%v): %q", a.status, err, a.body)
	}
	if !e.Code().Valid() || e.Message() == "" {
		return fmt.Errorf("status %d with error code %q, message %q", a.status, e.Code(), e.Message())
	}
	if want := a.header.Get("X-Request-Id"); id == "" || id != want {
		return fmt.Errorf("error body's request_id %q; want the X-Request-Id header's %q", id, want)
	}
	lower := strings.ToLower(string(a.body))
	for _, l := range leaks {
		if strings.Contains(lower, l) {
			return fmt.Errorf("error body holds %q: %s", l, a.body)
		}
	}
	return nil
}

// token returns an HS256 token signed with secret for sub, valid an hour,
// with extra claims as name, value pairs.
func token(t testing.TB, sub string, extra ...any) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		claims[extra[i].(string)] = extra[i+1]
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) string { return "Bearer " + tok }

// eventually polls cond every 10ms until it holds, failing the test after
// timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling, not waiting for an event
	}
}

// noLeak records the goroutine count and, at cleanup, once every cleanup
// registered after it has run, waits until the count is back. Call it
// first, and only in tests that do not run in parallel.
func noLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				t.Logf("goroutines: %d before, %d after", before, n)
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond) // polling
		}
	})
}

// who is what echosvc's whoami answers.
type who struct {
	PID       int            `json:"pid"`
	ID        string         `json:"id"`
	RequestID string         `json:"request_id"`
	Claims    map[string]any `json:"claims"`
	Caller    string         `json:"caller"`
}

func decodeWho(t testing.TB, a answer) who {
	t.Helper()
	var w who
	if a.status != 200 || json.Unmarshal(a.body, &w) != nil {
		t.Fatalf("whoami: %v", a)
	}
	return w
}

// counts asks an echosvc instance how many times each function ran.
func counts(t testing.TB, g *gateway, service string, hdr ...string) map[string]int {
	t.Helper()
	a := g.post(service, "count", "", hdr...)
	var n map[string]int
	if a.status != 200 || json.Unmarshal(a.body, &n) != nil {
		t.Fatalf("count: %v", a)
	}
	return n
}

// instances returns the IDs of the instances of service that answer
// $SRV.PING within a short window.
func instances(nc *nats.Conn, service string, want int) []string {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING."+service, inbox, nil); err != nil {
		return nil
	}
	var ids []string
	deadline := time.Now().Add(time.Second)
	for len(ids) < want || want == 0 {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var ping struct{ ID string }
		if json.Unmarshal(m.Data, &ping) == nil {
			ids = append(ids, ping.ID)
		}
	}
	if want > 0 && len(ids) == want {
		// Give a straggler beyond want a moment to show up too.
		if m, err := sub.NextMsg(50 * time.Millisecond); err == nil {
			var ping struct{ ID string }
			if json.Unmarshal(m.Data, &ping) == nil {
				ids = append(ids, ping.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// inFlight returns how many calls the instances of service are running
// now, summed over the n instances expected to answer $SRV.STATS.
// service may be "name.id" to ask one instance.
func inFlight(nc *nats.Conn, service string, n int) int64 {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return -1
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.STATS."+service, inbox, nil); err != nil {
		return -1
	}
	var total int64
	for range n {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			return -1
		}
		var st struct {
			Endpoints []struct{ Data mesh.EndpointStats }
		}
		if json.Unmarshal(m.Data, &st) != nil || len(st.Endpoints) == 0 {
			return -1
		}
		total += st.Endpoints[0].Data.InFlight
	}
	return total
}

// tally counts the answers of many calls.
type tally struct {
	// limit, when set, is the longest an answer may take.
	limit time.Duration

	mu       sync.Mutex
	made     int
	answered int
	byStatus map[int]int
	problems []string
}

// add records one call's answer; allowed are the statuses it may have.
// A call with no answer, a status not allowed, or an error body that is
// not clean is a problem.
func (c *tally) add(what string, a answer, allowed ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.made++
	if c.byStatus == nil {
		c.byStatus = map[int]int{}
	}
	problem := ""
	switch {
	case a.err != nil:
		problem = a.String()
	case !slices.Contains(allowed, a.status):
		c.answered++
		c.byStatus[a.status]++
		problem = fmt.Sprintf("status %d not among %v: %s", a.status, allowed, a.body)
	default:
		c.answered++
		c.byStatus[a.status]++
		if a.status != 200 {
			if err := cleanError(a); err != nil {
				problem = err.Error()
			}
		}
		if c.limit > 0 && a.dur > c.limit {
			problem = fmt.Sprintf("answered after %v, over %v: %v", a.dur, c.limit, a)
		}
	}
	if problem != "" && len(c.problems) < 20 {
		c.problems = append(c.problems, what+": "+problem)
	}
}

func (c *tally) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byStatus[status]
}

func (c *tally) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls made, %d answered", c.made, c.answered)
	for _, s := range slices.Sorted(maps.Keys(c.byStatus)) {
		fmt.Fprintf(&b, ", %d×%d", c.byStatus[s], s)
	}
	return b.String()
}

// check fails the test with the problems recorded.
func (c *tally) check(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Error(p)
	}
	if c.answered != c.made {
		t.Errorf("%d calls made, %d answered", c.made, c.answered)
	}
}

// call is one call a load generator makes and the statuses it may get.
type call struct {
	service, function, body string
	allowed                 []int
}

// maxLoad bounds the calls one runLoad makes, whatever happens.
const maxLoad = 10000

// runLoad keeps workers calling through g, each call chosen by next (with
// the worker's number and its call count), until stop is closed or
// maxLoad calls are made; wait for it with the returned WaitGroup.
func runLoad(g *gateway, c *tally, workers int, stop <-chan struct{}, next func(worker, i int) call) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if c.total() >= maxLoad {
					return
				}
				cl := next(w, i)
				c.add(cl.service+"."+cl.function, g.post(cl.service, cl.function, cl.body), cl.allowed...)
			}
		})
	}
	return &wg
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
