package broker_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
)

// An embedded broker with no configuration: in-process connections only, no
// port opened.
func ExampleStart() {
	ctx := context.Background()
	b, err := broker.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// A service in the same process, on its own connection.
	svc, err := b.NewConn("greeter")
	if err != nil {
		log.Fatal(err)
	}
	_, _ = svc.QueueSubscribe("fn.greeter.hello", "q", func(m *nats.Msg) {
		_ = m.Respond([]byte("hello, " + string(m.Data)))
	})
	_ = svc.Flush()

	// The host (the gateway) calls it.
	reply, err := b.Conn().Request("fn.greeter.hello", []byte("world"), time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply.Data))
	fmt.Println("listening:", b.ClientURL() != "")
	// Output:
	// hello, world
	// listening: false
}

// An embedded broker that services in other processes can join over TCP.
func ExampleWithListen() {
	b, err := broker.Start(context.Background(),
		broker.WithListen("127.0.0.1:0"), // port 0: any free port
		broker.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// What another process does with the URL the host prints.
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	_, _ = nc.QueueSubscribe("fn.remote.ping", "q", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) })
	_ = nc.Flush()

	reply, err := b.Conn().Request("fn.remote.ping", nil, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:"), string(reply.Data))
	// Output: true pong
}

// Connecting to an existing NATS deployment instead of embedding one, for
// example a gateway in a second process that uses the first host's broker
// with the host credentials. Here the "existing" server is another broker.
func ExampleConnect() {
	ctx := context.Background()
	existing, err := broker.Start(ctx, broker.WithListen("127.0.0.1:0"),
		broker.WithServiceAuth(broker.ServiceAuth{Secret: []byte("a secret of at least 16 bytes")}))
	if err != nil {
		log.Fatal(err)
	}
	defer existing.Close()
	host, _ := existing.HostCredentials()
	user, password := host.User, host.Password

	b, err := broker.Connect(ctx, []string{existing.ClientURL()},
		broker.WithUserInfo(user, password), // or WithCredentialsFile, WithToken; and WithTLS
		broker.WithEventHook(func(e broker.Event) { log.Println("nats:", e.Kind, e.Err) }))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	if err := b.Ready(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.Server() == nil, b.MaxPayload())
	// Output: true 1048576
}

// Two host processes (here, two brokers in one process) forming a cluster:
// a call made on one node is answered by a service on the other.
func ExampleWithCluster() {
	ctx := context.Background()
	a, err := broker.Start(ctx, broker.WithListen("127.0.0.1:0"),
		broker.WithCluster(broker.Cluster{Name: "demo", Listen: "127.0.0.1:0"}))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := broker.Start(ctx, broker.WithListen("127.0.0.1:0"),
		broker.WithCluster(broker.Cluster{Name: "demo", Listen: "127.0.0.1:0", Routes: []string{a.ClusterURL()}}))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	_, _ = b.Conn().QueueSubscribe("fn.onb.where", "q", func(m *nats.Msg) { _ = m.Respond([]byte("answered on b")) })
	_ = b.Conn().Flush()

	// Interest reaches node a over the route within moments.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if reply, err := a.Conn().Request("fn.onb.where", nil, time.Second); err == nil {
			fmt.Println(string(reply.Data))
			break
		}
	}
	// Output: answered on b
}
