package mesh_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
)

// gatewayVsClient sets up a gateway call and the same call made with the
// gateway's Client, both with a cancellable context without a deadline, as
// net/http gives handlers.
func gatewayVsClient(t *testing.T, body []byte) (viaGateway, viaClient func()) {
	t.Helper()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	ctx, cancel := context.WithCancel(reqctx.WithRequestID(context.Background(), "8Pq3bHdHdFOG1xNHN8fYzo"))
	t.Cleanup(cancel)

	reader := bytes.NewReader(body)
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/fn/svc/echo", nil)
	req.Body = io.NopCloser(reader)
	req.SetPathValue("service", "svc")
	req.SetPathValue("function", "echo")
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{h: http.Header{}}
	viaGateway = func() {
		reader.Reset(body)
		req.ContentLength = int64(len(body))
		clear(w.h)
		w.status, w.n = 0, 0
		e.gw.ServeHTTP(w, req)
		if w.status != http.StatusOK || w.n != len(body) {
			t.Fatalf("gateway: status %d, %d bytes; want 200, %d bytes", w.status, w.n, len(body))
		}
	}
	viaClient = func() {
		rep, err := e.client.Do(ctx, &mesh.Request{Service: "svc", Function: "echo", Params: body, ContentType: "application/json"})
		if err != nil || len(rep.Body) != len(body) {
			t.Fatalf("client: %d bytes, %v; want %d bytes", len(rep.Body), err, len(body))
		}
	}
	return viaGateway, viaClient
}

// TestGatewayAddsNoBodyCopy checks the gateway's promise that the body is
// read once, into a pooled buffer, and handed to NATS as it is: the bytes
// a gateway call allocates exceed those of the same call made with Client
// by far less than the body's size. (A copy of the body, an io.ReadAll or
// a buffer per call would add at least the body's 256 KB; what the test
// allows, half of it, leaves room for the pooled buffer being missed now
// and then: sync.Pool keeps a buffer put back on one P out of reach of a
// goroutine on another until the next GC.)
//
// Not parallel: runtime.MemStats counts every goroutine's allocations.
func TestGatewayAddsNoBodyCopy(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	body := append(append([]byte(`"`), bytes.Repeat([]byte("x"), 256<<10)...), '"')
	viaGateway, viaClient := gatewayVsClient(t, body)
	const runs = 40
	gw := bytesPerRun(runs, viaGateway)
	cl := bytesPerRun(runs, viaClient)
	t.Logf("%d-byte body: %d bytes allocated per gateway call, %d per client call", len(body), gw, cl)
	if extra := gw - cl; extra > int64(len(body))/2 {
		t.Errorf("a gateway call allocates %d bytes more than a client call, for a %d-byte body: the body is copied", extra, len(body))
	}
}

// bytesPerRun returns the bytes allocated, by every goroutine, per call of f.
func bytesPerRun(runs int, f func()) int64 {
	f() // warm up pools and connections
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc-before.TotalAlloc) / int64(runs)
}

// discardWriter is a ResponseWriter that counts the body and keeps none
// of it, so the test counts only what the gateway allocates.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}
