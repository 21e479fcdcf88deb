package mesh_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/cputime"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

// BenchmarkCall compares, in one run, the ways an HTTP app can reach a
// function, each path driven by the same HTTP client over loopback TCP with
// the same payloads and the same echo function:
//
//	mesh          the realistic chain: RequestID, Recover, JWT (HS256, a
//	              valid token on every request), authz (rule config),
//	              Gateway → embedded broker → Service on its own connection
//	mesh-bare     RequestID, Recover, Gateway → broker → Service
//	reverseproxy  httputil.ReverseProxy → an upstream HTTP server
//	nats          a hand-written handler: read the body, nc.Request to a
//	              bare micro endpoint, write the reply
//	direct        the echo inside the HTTP handler, no hop (the floor)
//	mesh-uncached mesh with the JWT verifier's token cache off, so that
//	              every call verifies its token's signature in full (as
//	              when every call carries a token not seen before)
//	mesh-rego     mesh with the quickstart's Rego policy
//	              (examples/quickstart/policy.rego) after the rule config,
//	              as the quickstart composes them
//
// Run it with
//
//	go test -run '^$' -bench BenchmarkCall -count 6 ./mesh/ | tee new.txt
//	benchstat new.txt
//
// ns/op is wall time per call with callParallelism×GOMAXPROCS callers at
// once, so it is the inverse of throughput; cpu-ns/op is the CPU time the
// whole process (client, servers, broker, service) spent per call.
func BenchmarkCall(b *testing.B) {
	paths := startCallPaths(b)
	warmUp(b, paths)
	for _, p := range paths {
		for _, size := range callSizes {
			b.Run(p.name+"/"+size.name, func(b *testing.B) {
				benchHTTP(b, p.url, size.body, callParallelism)
			})
		}
	}
}

// warmUp makes calls on every path, at every size, before any is
// measured, so that no path pays for the process warming up (its heap
// growing to the working size, the broker's buffers, threads) more than
// another: without it the path measured first looked slower (mesh 6-7%,
// mesh-rego 13-15% in 8 rounds with the paths' order reversed, p =
// 0.07-0.13).
func warmUp(b *testing.B, paths []callPath) {
	const callsPerCaller = 50
	for _, p := range paths {
		for _, size := range callSizes {
			var wg sync.WaitGroup
			for range callParallelism * runtime.GOMAXPROCS(0) {
				wg.Go(func() {
					var buf bytes.Buffer
					for range callsPerCaller {
						if err := postEcho(p.url, size.body, &buf); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
	}
	if b.Failed() {
		b.FailNow()
	}
}

// callParallelism is the b.SetParallelism of BenchmarkCall: enough callers
// per CPU that the CPUs, not the round trips' latency, bound every path.
const callParallelism = 8

// callSizes are the payloads: a small JSON object and one of about 16 KB.
var callSizes = []struct {
	name string
	body []byte
}{
	{"small", []byte(`{"id":"8Pq3bHdHdFOG1xNHN8fYzo","amount":5,"currency":"EUR","note":"a typical small JSON call"}`)},
	{"16k", jsonOfSize(16 << 10)},
}

// jsonOfSize returns a JSON object of n bytes or a little less: a list of
// records, the shape of a typical larger request.
func jsonOfSize(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"items":[`)
	for i := 0; ; i++ {
		item := fmt.Sprintf(`{"id":%d,"sku":"SKU-%06d","name":"item number %d","qty":%d,"price":"%d.99"}`, i, i*7919%1000000, i, i%9+1, i%500)
		if buf.Len()+len(item)+3 > n {
			break
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(item)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// echoFn is the function every path runs.
func echoFn(params []byte) []byte { return params }

// echoHTTP is echoFn as an HTTP handler, the way one would write it.
func echoHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(echoFn(body))
}

// benchSecret signs the bench callers' tokens (HS256).
var benchSecret = []byte("bench-secret-0123456789abcdef-0123456789abcdef")

// benchRules is a rule config in the shape of the design document's that
// needs the caller's claims: signed-in users with role "user" may call
// bench.echo, nothing else is allowed.
const benchRules = `{"services": {
	"bench": {"functions": {
		"echo": {"rule": {"rule": "and", "clauses": [
			{"rule": "authenticated"},
			{"rule": "match", "eval": "==", "type": "string", "f1": "args.auth.role", "f2": "user"}]}},
		"default": {"rule": {"rule": "deny"}}}},
	"default": {"functions": {"default": {"rule": {"rule": "deny"}}}}}}`

// benchToken is a valid token for benchSecret, as an identity provider
// issues it.
func benchToken(tb testing.TB) string {
	tb.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":   "https://idp.example.com",
		"sub":   "u1",
		"aud":   "funcmesh",
		"role":  "user",
		"email": "u1@example.com",
		"iat":   time.Now().Unix(),
		"exp":   time.Now().Add(24 * time.Hour).Unix(),
	}).SignedString(benchSecret)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

type callPath struct {
	name string
	url  string
}

// callClient is the HTTP client of every path: one transport keeping
// enough idle connections for every caller.
var callClient = &http.Client{Transport: newBenchTransport()}

func newBenchTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Minute,
	}
}

// callAuth is the Authorization header value set by startCallPaths and
// sent on every request, whatever the path.
var callAuth []string

// startCallPaths starts the servers of every path of BenchmarkCall.
func startCallPaths(b *testing.B) []callPath {
	b.Helper()
	ctx := context.Background()
	callAuth = []string{"Bearer " + benchToken(b)}

	brk, err := broker.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = brk.Close() })

	// mesh and mesh-bare: the gateway on the host's connection, the
	// service on its own.
	svcConn, err := brk.NewConn("bench")
	if err != nil {
		b.Fatal(err)
	}
	svc, err := mesh.NewService(svcConn, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Stop(context.Background()) })
	if err := svc.HandleFunc("echo", func(_ context.Context, c *mesh.Call) ([]byte, error) {
		return echoFn(c.Params()), nil
	}); err != nil {
		b.Fatal(err)
	}
	// As a host does, the gateway signs the claims it forwards.
	signer, err := transport.NewClaimsSigner(brk.ClaimsKey())
	if err != nil {
		b.Fatal(err)
	}
	gw, err := mesh.NewGateway(brk.Conn(), mesh.WithClaimsSigner(signer))
	if err != nil {
		b.Fatal(err)
	}
	jwtOpts := middleware.JWTOptions{
		Keys:     []middleware.JWTKey{{Algorithm: "HS256", Key: benchSecret}},
		Issuer:   "https://idp.example.com",
		Audience: []string{"funcmesh"},
	}
	verifier, err := middleware.NewJWTVerifier(jwtOpts)
	if err != nil {
		b.Fatal(err)
	}
	jwtOpts.CacheSize = -1
	uncachedVerifier, err := middleware.NewJWTVerifier(jwtOpts)
	if err != nil {
		b.Fatal(err)
	}
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(benchRules)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = policy.Close() })
	full := alice.New(middleware.RequestID, middleware.Recover(nil), middleware.JWT(verifier), policy.Middleware).Then(gw)
	quickstartRego, err := os.ReadFile("../examples/quickstart/policy.rego")
	if err != nil {
		b.Fatal(err)
	}
	regoPolicy, err := authz.New(ctx, authz.RulesJSON([]byte(benchRules)), authz.Module("policy.rego", string(quickstartRego)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = regoPolicy.Close() })
	withRego := alice.New(middleware.RequestID, middleware.Recover(nil), middleware.JWT(verifier), regoPolicy.Middleware).Then(gw)
	uncached := alice.New(middleware.RequestID, middleware.Recover(nil), middleware.JWT(uncachedVerifier), policy.Middleware).Then(gw)
	bare := alice.New(middleware.RequestID, middleware.Recover(nil)).Then(gw)

	// reverseproxy: the proxy, with a transport like the callers', to an
	// upstream running the echo.
	upstream := serve(b, "POST /fn/bench/echo", http.HandlerFunc(echoHTTP))
	target, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target); r.SetXForwarded() },
		Transport: newBenchTransport(),
	}

	// nats: a bare micro endpoint and a handler calling it by hand.
	echoConn, err := brk.NewConn("nats-echo")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := micro.AddService(echoConn, micro.Config{
		Name:    "natsecho",
		Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{
			Subject: "natsecho.echo",
			Handler: micro.HandlerFunc(func(r micro.Request) { _ = r.Respond(echoFn(r.Data())) }),
		},
	}); err != nil {
		b.Fatal(err)
	}
	if err := echoConn.Flush(); err != nil {
		b.Fatal(err)
	}
	callerConn, err := brk.NewConn("nats-caller")
	if err != nil {
		b.Fatal(err)
	}
	natsHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m, err := callerConn.Request("natsecho.echo", body, 10*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(m.Data)
	})

	const route = "POST /fn/{service}/{function}"
	return []callPath{
		{"mesh", serve(b, route, full) + "/fn/bench/echo"},
		{"mesh-bare", serve(b, route, bare) + "/fn/bench/echo"},
		{"reverseproxy", serve(b, route, proxy) + "/fn/bench/echo"},
		{"nats", serve(b, route, natsHandler) + "/fn/bench/echo"},
		{"direct", serve(b, route, http.HandlerFunc(echoHTTP)) + "/fn/bench/echo"},
		{"mesh-uncached", serve(b, route, uncached) + "/fn/bench/echo"},
		{"mesh-rego", serve(b, route, withRego) + "/fn/bench/echo"},
	}
}

// serve runs h on a loopback HTTP server for pattern and returns its URL.
func serve(tb testing.TB, pattern string, h http.Handler) string {
	tb.Helper()
	mux := http.NewServeMux()
	mux.Handle(pattern, h)
	s := httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s.URL
}

// benchHTTP posts body to url from parallelism×GOMAXPROCS goroutines and
// checks every answer is 200 with the body echoed.
func benchHTTP(b *testing.B, url string, body []byte, parallelism int) {
	// One call outside the timing opens a connection and checks the path.
	if err := postEcho(url, body, new(bytes.Buffer)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		for pb.Next() {
			if err := postEcho(url, body, &buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCPU(b, cpu)
}

// reportCPU reports the CPU time the whole process (callers, servers,
// broker, services) spent per operation since start, as cpu-ns/op. On a
// machine shared with other work it is steadier than ns/op, which counts
// the time other processes held the CPUs.
func reportCPU(b *testing.B, start time.Duration) {
	if used := cputime.Process() - start; used > 0 && start > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

var jsonValue = []string{"application/json"}

// postEcho makes one call and checks its answer, reading it into buf.
func postEcho(url string, body []byte, buf *bytes.Buffer) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header["Content-Type"] = jsonValue
	req.Header["Authorization"] = callAuth
	res, err := callClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(res.Body); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d: %s", url, res.StatusCode, strings.TrimSpace(buf.String()))
	}
	if !bytes.Equal(buf.Bytes(), body) {
		return fmt.Errorf("POST %s: got %d bytes back, not the %d sent", url, buf.Len(), len(body))
	}
	return nil
}
