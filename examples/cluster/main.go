// Command cluster shows a mesh that outlives one of its brokers. Three
// embedded brokers form a NATS cluster (in one process for the demo; in
// production each runs in its own host process, with the same options),
// the greeter service runs on node A, the gateway on node C, and node B,
// the seed through which A and C joined, is stopped half way. Calls keep
// working: NATS nodes tell each other about their peers and connect in a
// full mesh, so A and C are routed to each other directly, not through B.
//
//	go run ./examples/cluster
//
// It prints each step and every call's answer, and exits 1 if a call fails.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// 1. Three nodes. B starts first; A and C know only B's route URL.
	nodeB, err := startNode(ctx, "B")
	if err != nil {
		return err
	}
	defer nodeB.Close()
	nodeA, err := startNode(ctx, "A", nodeB.ClusterURL())
	if err != nil {
		return err
	}
	defer nodeA.Close()
	nodeC, err := startNode(ctx, "C", nodeB.ClusterURL())
	if err != nil {
		return err
	}
	defer nodeC.Close()
	for _, n := range []struct {
		name string
		b    *broker.Broker
		note string
	}{{"A", nodeA, "joined through B"}, {"B", nodeB, "the seed"}, {"C", nodeC, "joined through B"}} {
		fmt.Printf("node %s: clients %s, routes %s (%s)\n", n.name, n.b.ClientURL(), n.b.ClusterURL(), n.note)
	}
	if err := waitFor(ctx, "a full mesh of routes", func() bool {
		return peers(nodeA) == 2 && peers(nodeB) == 2 && peers(nodeC) == 2
	}); err != nil {
		return err
	}
	fmt.Println("cluster formed: every node has a route to the other two")

	// 2. The greeter service on node A.
	nc, err := nodeA.NewConn("greeter")
	if err != nil {
		return err
	}
	svc, err := mesh.NewService(nc, "greeter", mesh.WithVersion("1.0.0"))
	if err != nil {
		return err
	}
	defer svc.Stop(context.Background())
	err = svc.Handle("hello", mesh.Func(func(_ context.Context, in struct{ Name string }) (map[string]string, error) {
		return map[string]string{"greeting": "Hello, " + in.Name + "!", "served_on": "node A"}, nil
	}))
	if err != nil {
		return err
	}

	// 3. The gateway on node C, on a loopback port of its own.
	gw, err := mesh.NewGateway(nodeC.Conn())
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", middleware.RequestID(gw))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/fn/greeter/hello"
	fmt.Printf("service greeter runs on node A; the gateway on node C: POST %s\n", url)

	// The service's subscriptions reach C over the route a moment after
	// they are made; until then C knows no instance (503).
	if err := waitFor(ctx, "node C to see the greeter service", func() bool {
		status, _, err := call(ctx, url, "probe")
		return err == nil && status == http.StatusOK
	}); err != nil {
		return err
	}

	// 4. Calls through C to A, with all three nodes up.
	if err := calls(ctx, url, "before", 1, 3); err != nil {
		return err
	}

	// 5. Stop the seed.
	fmt.Println("stopping node B, the seed ...")
	if err := nodeB.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping node B: %w", err)
	}
	if err := waitFor(ctx, "A and C to drop their routes to B", func() bool {
		return peers(nodeA) == 1 && peers(nodeC) == 1
	}); err != nil {
		return err
	}
	fmt.Println("node B stopped; A and C are still routed to each other")

	// 6. The same calls, with B gone: every one must succeed.
	if err := calls(ctx, url, "after", 4, 6); err != nil {
		return err
	}
	fmt.Println("ok: every call was answered after node B stopped")

	// Shut down in order: HTTP, the service, then the brokers (deferred).
	shutdownCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	return svc.Stop(shutdownCtx)
}

// startNode starts an embedded broker as cluster node name, with a client
// listener and a route listener on free loopback ports, routed to routes.
func startNode(ctx context.Context, name string, routes ...string) (*broker.Broker, error) {
	b, err := broker.Start(ctx,
		broker.WithServerName(name),
		broker.WithListen("127.0.0.1:0"), // a cluster node needs a client listener
		broker.WithCluster(broker.Cluster{Name: "demo", Listen: "127.0.0.1:0", Routes: routes}))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return b, nil
}

// peers counts the other nodes b has routes to (a pair of nodes keeps a
// pool of several route connections).
func peers(b *broker.Broker) int {
	rz, err := b.Server().Routez(&server.RoutezOptions{})
	if err != nil {
		return -1
	}
	ids := map[string]bool{}
	for _, r := range rz.Routes {
		ids[r.RemoteID] = true
	}
	return len(ids)
}

// calls makes the calls numbered from to to and prints each answer; any
// answer but 200 is an error.
func calls(ctx context.Context, url, when string, from, to int) error {
	for i := from; i <= to; i++ {
		status, body, err := call(ctx, url, fmt.Sprint(i))
		if err != nil {
			return fmt.Errorf("call %d (%s B stopped): %w", i, when, err)
		}
		fmt.Printf("call %d (%s B stopped): %d %s\n", i, when, status, body)
		if status != http.StatusOK {
			return fmt.Errorf("call %d (%s B stopped): status %d", i, when, status)
		}
	}
	return nil
}

func call(ctx context.Context, url, name string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		return 0, "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(body)), err
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return errors.New("timed out waiting for " + what)
		case <-tick.C:
		}
	}
	return nil
}
