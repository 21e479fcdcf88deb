package mesh_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/cputime"
	"github.com/funcmesh/funcmesh/mesh"
)

// BenchmarkReplyPath finds where one connection's reply path saturates:
// one Client calling an echo function with callers×GOMAXPROCS goroutines at
// once, over 1 or 4 connections (WithConns). nats.go reads all replies of a
// connection on one goroutine and writes all requests under one lock; four
// service instances, each on its own connection, make sure the client side
// is what is measured.
//
//	go test -run '^$' -bench BenchmarkReplyPath -count 6 ./mesh/
func BenchmarkReplyPath(b *testing.B) {
	ctx := context.Background()
	brk, err := broker.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = brk.Close() })
	for i := range 4 {
		nc, err := brk.NewConn(fmt.Sprintf("bench-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		svc, err := mesh.NewService(nc, "bench", mesh.WithMaxConcurrency(10_000))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = svc.Stop(context.Background()) })
		if err := svc.Handle("echo", echo); err != nil {
			b.Fatal(err)
		}
	}
	body := callSizes[0].body
	for _, conns := range []int{1, 4} {
		var pool []*nats.Conn
		for i := range conns {
			nc, err := brk.NewConn(fmt.Sprintf("client-%d", i))
			if err != nil {
				b.Fatal(err)
			}
			pool = append(pool, nc)
		}
		c, err := mesh.NewClient(pool[0], mesh.WithConns(pool[1:]...))
		if err != nil {
			b.Fatal(err)
		}
		for _, callers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("conns=%d/callers=%d", conns, callers), func(b *testing.B) {
				b.SetParallelism(callers)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				cpu := cputime.Process()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := c.Invoke(ctx, "bench", "echo", body); err != nil {
							b.Error(err)
							return
						}
					}
				})
				reportCPU(b, cpu)
			})
		}
	}
}
