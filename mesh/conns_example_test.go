package mesh_test

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
)

// A gateway that spreads its calls over three connections to the embedded
// broker, for a host that makes many calls at once.
func ExampleWithConns() {
	ctx := context.Background()
	b, err := broker.Start(ctx)
	if err != nil {
		panic(err)
	}
	defer b.Close()

	svcConn, _ := b.NewConn("greeter")
	svc, _ := mesh.NewService(svcConn, "greeter")
	defer svc.Stop(ctx)
	_ = svc.Handle("hello", mesh.Func(func(ctx context.Context, name string) (string, error) {
		return "hello, " + name, nil
	}))

	// The broker owns the connections it opens and closes them on
	// Shutdown.
	var more []*nats.Conn
	for i := range 2 {
		nc, err := b.NewConn(fmt.Sprintf("gateway-%d", i+2))
		if err != nil {
			panic(err)
		}
		more = append(more, nc)
	}
	gw, err := mesh.NewGateway(b.Conn(), mesh.WithConns(more...))
	if err != nil {
		panic(err)
	}

	// gw serves POST /fn/{service}/{function} as usual; its Client calls
	// from Go over the same connections.
	out, err := mesh.InvokeJSON[string](ctx, gw.Client, "greeter", "hello", "Ada")
	fmt.Println(out, err)
	// Output: hello, Ada <nil>
}
