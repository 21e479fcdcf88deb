package broker_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
)

// peers counts the other servers a node has routes to (a pair of nodes has
// several route connections).
func peers(t testing.TB, b *broker.Broker) int {
	t.Helper()
	rz, err := b.Server().Routez(&server.RoutezOptions{})
	if err != nil {
		t.Fatalf("Routez: %v", err)
	}
	ids := map[string]bool{}
	for _, r := range rz.Routes {
		ids[r.RemoteID] = true
	}
	return len(ids)
}

func clusterNode(t *testing.T, name string, routes ...string) *broker.Broker {
	return start(t,
		broker.WithServerName(name),
		broker.WithListen("127.0.0.1:0"),
		broker.WithCluster(broker.Cluster{Name: "test", Listen: "127.0.0.1:0", Routes: routes}))
}

func TestCluster(t *testing.T) {
	t.Parallel()
	a := clusterNode(t, "A")
	if u, err := url.Parse(a.ClusterURL()); err != nil || u.Scheme != "nats" || u.Port() == "0" || u.Port() == "" {
		t.Fatalf("ClusterURL() = %q; want nats://host:<bound port>", a.ClusterURL())
	}
	b := clusterNode(t, "B", a.ClusterURL())
	c := clusterNode(t, "C", a.ClusterURL(), b.ClusterURL())
	for _, n := range []*broker.Broker{a, b, c} {
		waitFor(t, 10*time.Second, "a full mesh of routes", func() bool { return peers(t, n) == 2 })
	}

	echo(t, c.Conn(), "fn.onc.echo", "C:")
	// Interest travels to A over the route asynchronously: poll.
	waitFor(t, 10*time.Second, "A's request answered on C", func() bool {
		m, err := a.Conn().Request("fn.onc.echo", []byte("x"), time.Second)
		return err == nil && string(m.Data) == "C:x"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("stopping B: %v", err)
	}
	for _, n := range []*broker.Broker{a, c} {
		waitFor(t, 10*time.Second, "B gone from the routes", func() bool { return peers(t, n) == 1 })
	}
	for i := range 20 {
		request(t, a.Conn(), "fn.onc.echo", fmt.Sprint(i), fmt.Sprint("C:", i))
	}
	// And the other way round.
	echo(t, a.Conn(), "fn.ona.echo", "A:")
	waitFor(t, 10*time.Second, "C's request answered on A", func() bool {
		m, err := c.Conn().Request("fn.ona.echo", []byte("y"), time.Second)
		return err == nil && string(m.Data) == "A:y"
	})
}

func TestClusterRouteAuth(t *testing.T) {
	t.Parallel()
	auth := broker.Cluster{Name: "sec", Listen: "127.0.0.1:0", User: "route", Password: "s3cret"}
	a := start(t, broker.WithListen("127.0.0.1:0"), broker.WithCluster(auth))
	withRoute := auth
	withRoute.Routes = []string{a.ClusterURL()}
	b := start(t, broker.WithListen("127.0.0.1:0"), broker.WithCluster(withRoute))
	waitFor(t, 10*time.Second, "the authenticated route", func() bool { return peers(t, a) == 1 && peers(t, b) == 1 })

	// A node with the wrong password never joins.
	wrong := withRoute
	wrong.Password = "guess"
	intruder := start(t, broker.WithListen("127.0.0.1:0"), broker.WithCluster(wrong))
	echo(t, a.Conn(), "fn.secret.echo", "")
	// The intruder's route is refused; it must not see A's subscription.
	// Interest would reach it within milliseconds over a route, so a
	// second of "no responders" shows the route is not there.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, err := intruder.Conn().Request("fn.secret.echo", nil, 100*time.Millisecond); err == nil {
			t.Fatal("a node with the wrong route password reached the cluster")
		}
		time.Sleep(20 * time.Millisecond) // sampling the absence of a route, not waiting for one
	}
	// The intruder itself may list A for a moment each time it tries
	// again (a soliciting node registers the route on A's INFO, which
	// comes before A checks the password), so the members are asked: a
	// node registers an accepted route only after its password held.
	intruderID := intruder.Server().ID()
	for _, n := range []*broker.Broker{a, b} {
		rz, err := n.Server().Routez(&server.RoutezOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rz.Routes {
			if r.RemoteID == intruderID {
				t.Fatalf("%s has a route to the intruder", n.Server().Name())
			}
		}
		if got := peers(t, n); got != 1 {
			t.Fatalf("%s has %d peers; want 1", n.Server().Name(), got)
		}
	}
}

// TestClusterServiceAuth: nodes that share a ServiceAuth secret accept each
// other's service credentials and enforce the same permissions.
func TestClusterServiceAuth(t *testing.T) {
	t.Parallel()
	auth := broker.WithServiceAuth(broker.ServiceAuth{Secret: testSecret})
	a := start(t, broker.WithListen("127.0.0.1:0"), auth,
		broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0"}))
	b := start(t, broker.WithListen("127.0.0.1:0"), auth,
		broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0", Routes: []string{a.ClusterURL()}}))
	waitFor(t, 10*time.Second, "the route", func() bool { return peers(t, a) == 1 && peers(t, b) == 1 })

	// Credentials made by node a, used on node b.
	creds, err := a.ServiceCredentials("payments")
	if err != nil {
		t.Fatal(err)
	}
	e := newErrs()
	nc, err := nats.Connect(b.ClientURL(), creds.Option(), e.option())
	if err != nil {
		t.Fatalf("node a's credentials on node b: %v", err)
	}
	defer nc.Close()
	if _, err := nc.QueueSubscribe("fn.payments.where", "q", func(m *nats.Msg) { _ = m.Respond([]byte("b")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.QueueSubscribe("fn.orders.where", "q", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := e.wait(t, 5*time.Second, isPermissionError("fn.orders.where")); err == nil {
		t.Fatal("node b let payments subscribe to orders")
	}
	waitFor(t, 10*time.Second, "a's request answered by the service on b", func() bool {
		m, err := a.Conn().Request("fn.payments.where", nil, time.Second)
		return err == nil && string(m.Data) == "b"
	})
}
