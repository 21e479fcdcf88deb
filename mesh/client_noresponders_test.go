package mesh_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// TestClientRetriesNoResponders: a call that reached no instance is sent
// again, up to the max attempts, and still fails at once with 503 when no
// instance runs. (While a cluster node stops, the broker can answer "no
// responders" for a moment although another instance runs; the retry
// gets the call to it. internal/reliability's TestClusterNodeStops saw
// that as a 404.)
func TestClientRetriesNoResponders(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, nil)
	nc := natstest.Connect(t, srv)
	inMsgs := func() int64 {
		v, err := srv.Varz(&server.VarzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return v.InMsgs
	}
	for _, attempts := range []int{1, 3, mesh.DefaultMaxAttempts} {
		c, err := mesh.NewClient(nc, mesh.WithMaxAttempts(attempts))
		if err != nil {
			t.Fatal(err)
		}
		before := inMsgs()
		start := time.Now()
		_, err = c.Invoke(context.Background(), "missing", "fn", nil)
		if transport.CodeOf(err) != transport.CodeUnavailable {
			t.Fatalf("%d attempts: %v; want unavailable", attempts, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%d attempts: failed after %v; want at once", attempts, d)
		}
		if n := inMsgs() - before; n != int64(attempts) {
			t.Errorf("%d attempts: the server got %d requests; want %d", attempts, n, attempts)
		}
	}
}
