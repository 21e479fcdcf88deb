package mesh_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// TestGatewayMethod: mounted on a pattern without a method, as CORS needs,
// the gateway answers 405 to anything but POST and makes no call, so a GET
// from a link or an image tag cannot run a function.
func TestGatewayMethod(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	nc := natstest.Connect(t, srv)
	var calls atomic.Int64
	if _, err := nc.Subscribe("fn.svc.echo", func(m *nats.Msg) { calls.Add(1); _ = m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	gw, err := mesh.NewGateway(nc)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/fn/{service}/{function}", gw)
	for _, m := range []string{"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(m, "/fn/svc/echo", nil))
		if rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
			t.Errorf("%s: %d, Allow %q; want 405, Allow POST", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d calls made; want none", n)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/fn/svc/echo", nil))
	if rec.Code != 200 || calls.Load() != 1 {
		t.Errorf("POST: %d, %d calls; want 200, 1 call", rec.Code, calls.Load())
	}
}

// TestGatewayRequestIDEarlyErrors: without the request ID middleware the
// gateway names every request itself, also those it refuses before making
// a call, so that every error body carries a request ID.
func TestGatewayRequestIDEarlyErrors(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	gw, err := mesh.NewGateway(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/fn/{service}/{function}", maxBody(4)(gw))
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/fn/svc/echo", "", 405},
		{"POST", "/fn/a.b/echo", "{}", 400},
		{"POST", "/fn/svc/a*", "{}", 400},
		{"POST", "/fn/svc/echo", "[1,2,3]", 413},
		{"POST", "/fn/svc/echo", "{}", 503},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		e, id, err := transport.ParseHTTPError(rec.Code, rec.Body.Bytes())
		if rec.Code != tc.status || err != nil || id == "" || id != rec.Header().Get("X-Request-Id") {
			t.Errorf("%s %s: %d %s (%v, %v); want %d with the X-Request-Id %q in the body", tc.method, tc.path, rec.Code, rec.Body, e, err, tc.status, rec.Header().Get("X-Request-Id"))
		}
	}
}
