package mesh_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
)

func BenchmarkReplyPathExp(b *testing.B) {
	ctx := context.Background()
	brk, err := broker.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = brk.Close() })
	for i := 0; i < 4; i++ {
		nc, _ := brk.NewConn("svc")
		svc, err := mesh.NewService(nc, "bench", mesh.WithMaxConcurrency(100000))
		if err != nil {
			b.Fatal(err)
		}
		svc.HandleFunc("echo", func(_ context.Context, c *mesh.Call) ([]byte, error) { return c.Params(), nil })
		b.Cleanup(func() { _ = svc.Stop(context.Background()) })
	}
	body := callSizes[0].body
	for _, n := range []int{1, 2, 4} {
		var clients []*mesh.Client
		for i := 0; i < n; i++ {
			nc, _ := brk.NewConn("c")
			c, _ := mesh.NewClient(nc)
			clients = append(clients, c)
		}
		for _, par := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("conns=%d/par=%d", n, par), func(b *testing.B) {
				var next atomic.Uint64
				b.SetParallelism(par)
				b.ReportAllocs()
				cpu := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					c := clients[next.Add(1)%uint64(len(clients))]
					for pb.Next() {
						if _, err := c.Call(ctx, "bench", "echo", body); err != nil {
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
