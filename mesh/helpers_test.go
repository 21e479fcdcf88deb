package mesh_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// env is a broker with a gateway mounted on a real HTTP server.
type env struct {
	srv    *server.Server
	nc     *nats.Conn // the gateway's connection
	client *mesh.Client
	gw     *mesh.Gateway
	http   *httptest.Server
}

// newEnv starts a broker and a gateway at POST /fn/{service}/{function};
// wrap, if not nil, wraps the gateway (middleware under test).
func newEnv(t *testing.T, wrap func(http.Handler) http.Handler, opts ...mesh.ClientOption) *env {
	t.Helper()
	e := &env{srv: natstest.Start(t, nil)}
	e.nc = natstest.Connect(t, e.srv)
	gw, err := mesh.NewGateway(e.nc, append([]mesh.ClientOption{mesh.WithClaimsSigner(testSigner)}, opts...)...)
	if err != nil {
		t.Fatalf("NewGateway: %v", err)
	}
	// Nested calls pass a router; here one that allows them all.
	startRouter(t, e.nc, func(context.Context, string, string, []byte) error { return nil })
	e.gw, e.client = gw, gw.Client
	var h http.Handler = gw
	if wrap != nil {
		h = wrap(h)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", h)
	e.http = httptest.NewServer(mux)
	t.Cleanup(e.http.Close)
	return e
}

// testSigner signs the claims the test gateways forward.
var testSigner = func() *transport.ClaimsSigner {
	s, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "test", Secret: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		panic(err)
	}
	return s
}()

// startRouter starts a router of nested calls on nc, stopped at cleanup.
func startRouter(t testing.TB, nc *nats.Conn, authorize mesh.AuthorizeFunc, opts ...mesh.ClientOption) *mesh.Router {
	t.Helper()
	r, err := mesh.NewRouter(nc, authorize, append([]mesh.ClientOption{mesh.WithClaimsSigner(testSigner)}, opts...)...)
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

// conn opens another connection to the env's broker, as a separate service
// instance would.
func (e *env) conn(t *testing.T) *nats.Conn {
	t.Helper()
	return natstest.Connect(t, e.srv)
}

// service starts an instance on its own connection with the given
// functions, stopped at cleanup.
func (e *env) service(t *testing.T, name string, fns map[string]mesh.Handler, opts ...mesh.ServiceOption) *mesh.Service {
	t.Helper()
	return startService(t, e.conn(t), name, fns, opts...)
}

func startService(t *testing.T, nc *nats.Conn, name string, fns map[string]mesh.Handler, opts ...mesh.ServiceOption) *mesh.Service {
	t.Helper()
	svc, err := mesh.NewService(nc, name, opts...)
	if err != nil {
		t.Fatalf("NewService(%s): %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	for fn, h := range fns {
		if err := svc.Handle(fn, h); err != nil {
			t.Fatalf("Handle(%s): %v", fn, err)
		}
	}
	return svc
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errCode returns the code of a JSON error body ("" if none).
func (r response) errCode() transport.Code {
	e, _, err := transport.ParseHTTPError(r.status, r.body)
	if err != nil {
		return ""
	}
	return e.Code()
}

func (r response) errMessage() string {
	e, _, err := transport.ParseHTTPError(r.status, r.body)
	if err != nil {
		return ""
	}
	return e.Message()
}

// post sends POST /fn/service/function with body.
func (e *env) post(t *testing.T, service, function, body string, hdr ...string) response {
	t.Helper()
	return postURL(t, e.http.URL+"/fn/"+service+"/"+function, body, hdr...)
}

func postURL(t *testing.T, url, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echo returns its params.
var echo = mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
	return c.Params(), nil
})

// maxBody puts the body limit n in each request's context, as
// middleware.BodyLimit does, without BodyLimit's own check, so that the
// gateway's is the one tested.
func maxBody(n int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(reqctx.WithMaxBodyBytes(r.Context(), n)))
		})
	}
}
