package mesh_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
)

var benchParams = []byte(`{"amount":5,"currency":"EUR","note":"a typical small JSON call"}`)

// benchMesh starts a broker, an echo service on its own connection, and a
// client on another.
func benchMesh(b *testing.B) (*nats.Conn, *mesh.Client) {
	b.Helper()
	s := natstest.Start(b, nil)
	svc, err := mesh.NewService(natstest.Connect(b, s), "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Stop(context.Background()) })
	if err := svc.Handle("echo", echo); err != nil {
		b.Fatal(err)
	}
	nc := natstest.Connect(b, s)
	c, err := mesh.NewClient(nc)
	if err != nil {
		b.Fatal(err)
	}
	return nc, c
}

// BenchmarkBareRequest is the baseline: nc.RequestMsg to a plain NATS
// responder, with a request ID and deadline header like a mesh call.
func BenchmarkBareRequest(b *testing.B) {
	s := natstest.Start(b, nil)
	resp := natstest.Connect(b, s)
	if _, err := resp.QueueSubscribe("fn.bench.echo", "q", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	if err := resp.Flush(); err != nil {
		b.Fatal(err)
	}
	nc := natstest.Connect(b, s)
	b.ReportAllocs()
	for b.Loop() {
		msg := &nats.Msg{Subject: "fn.bench.echo", Data: benchParams, Header: nats.Header{
			"Mesh-Request-Id": {"8Pq3bHdHdFOG1xNHN8fYzo"}, "Mesh-Deadline": {"1764000000000"},
		}}
		if _, err := nc.RequestMsg(msg, 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientCall is one call through Client and Service, round trip
// over a real in-process broker.
func BenchmarkClientCall(b *testing.B) {
	_, c := benchMesh(b)
	ctx := reqctx.WithRequestID(context.Background(), "8Pq3bHdHdFOG1xNHN8fYzo")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Invoke(ctx, "bench", "echo", benchParams); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGateway is one HTTP call through the gateway handler (no HTTP
// server, a ResponseWriter that allocates nothing), Client and Service:
// its allocs/op less BenchmarkClientCall's is what the gateway adds to a
// call (docs/performance.md).
func BenchmarkGateway(b *testing.B) {
	_, c := benchMesh(b)
	gw := &mesh.Gateway{Client: c}
	body := bytes.NewReader(nil)
	req := httptest.NewRequest(http.MethodPost, "/fn/bench/echo", body)
	req.SetPathValue("service", "bench")
	req.SetPathValue("function", "echo")
	req.Header.Set("Content-Type", "application/json")
	// A server's request context can be cancelled, as net/http's is.
	ctx, cancel := context.WithCancel(reqctx.WithRequestID(req.Context(), "8Pq3bHdHdFOG1xNHN8fYzo"))
	defer cancel()
	req = req.WithContext(ctx)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(benchParams)
		req.ContentLength = int64(len(benchParams))
		clear(w.h)
		w.status, w.n = 0, 0
		gw.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}
