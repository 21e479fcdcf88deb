package reliability_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/funcmesh/funcmesh/broker"
)

// peers counts the other nodes a node has routes to.
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

// TestClusterNodeStops stops one node of a three-node cluster under load.
// Gateways on the other two nodes keep working: the calls in flight
// through the stopped node at that moment may time out (504, by their
// deadline), every call made once the others have dropped their routes to
// it succeeds, and the instance that was connected to the stopped node
// moves to another node by itself and serves again.
func TestClusterNodeStops(t *testing.T) {
	t.Parallel()
	const timeout = 4 * time.Second
	node := func(name string, routes ...string) *broker.Broker {
		return startBroker(t, broker.WithServerName(name),
			broker.WithCluster(broker.Cluster{Name: "rel", Listen: "127.0.0.1:0", Routes: routes}))
	}
	n1 := node("n1")
	n2 := node("n2", n1.ClusterURL())
	n3 := node("n3", n1.ClusterURL(), n2.ClusterURL())
	nodes := []*broker.Broker{n1, n2, n3}
	for _, n := range nodes {
		eventually(t, 20*time.Second, "a full mesh of routes", func() bool { return peers(n) == 2 })
	}
	p2 := startEcho(t, n2.ClientURL(), "spread")
	p3 := startEcho(t, n3.ClientURL(), "spread")
	g1 := newGateway(t, n1.Conn(), gatewayConfig{Timeout: timeout})
	g2 := newGateway(t, n2.Conn(), gatewayConfig{Timeout: timeout})

	var (
		mu   sync.Mutex
		pids = map[int]int{}
	)
	served := func(pid int) int { mu.Lock(); defer mu.Unlock(); return pids[pid] }
	var before, after tally // calls started before and after the routes to n3 went
	var dropped time.Time   // set, under mu, once n1 and n2 dropped n3
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		g := []*gateway{g1, g2}[w%2]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				c := &before
				if !dropped.IsZero() {
					c = &after
				}
				mu.Unlock()
				a := g.post("spread", "whoami", "{}")
				c.add("spread.whoami", a, 200, 504)
				if w, ok := whoOf(a); ok {
					mu.Lock()
					pids[w.PID]++
					mu.Unlock()
				}
			}
		})
	}
	eventually(t, 20*time.Second, "both instances to serve calls through both gateways", func() bool {
		return served(p2.Cmd.Process.Pid) > 10 && served(p3.Cmd.Process.Pid) > 10
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n3.Shutdown(ctx); err != nil {
		t.Fatalf("stopping n3: %v", err)
	}
	for _, n := range nodes[:2] {
		eventually(t, 20*time.Second, "n3 gone from the routes", func() bool { return peers(n) == 1 })
	}
	mu.Lock()
	dropped = time.Now()
	pids = map[int]int{}
	mu.Unlock()

	// The instance of n3 reconnects to n1 or n2 (it learned their
	// addresses from the cluster) and serves again.
	eventually(t, 30*time.Second, "the instance of n3 to serve again from another node", func() bool {
		return served(p3.Cmd.Process.Pid) > 10 && served(p2.Cmd.Process.Pid) > 10
	})
	eventually(t, 30*time.Second, "200 calls after the node stopped", func() bool { return after.total() >= 200 })
	close(stop)
	wg.Wait()

	before.check(t)
	after.check(t)
	if n := after.count(200); n != after.total() {
		t.Errorf("calls after n3 left: %v; want every one to succeed", &after)
	}
	// Only the calls in flight through n3 when it stopped may have failed.
	if n := before.total() - before.count(200); n > 4 {
		t.Errorf("calls before n3 left: %v; want at most one failure per caller", &before)
	}
	t.Logf("before n3 left: %v; after: %v", &before, &after)
}
