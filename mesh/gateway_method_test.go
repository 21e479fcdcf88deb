package mesh_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
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
