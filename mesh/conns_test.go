package mesh_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

func TestWithConnsSpreadsCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	conns := []*nats.Conn{e.conn(t), e.conn(t), e.conn(t)}
	c, err := mesh.NewClient(conns[0], mesh.WithConns(conns[1:]...))
	if err != nil {
		t.Fatal(err)
	}
	if c.Conn() != conns[0] {
		t.Errorf("Conn() is not the connection given to NewClient")
	}
	const calls = 300
	for i := range calls {
		out, err := c.Invoke(context.Background(), "svc", "echo", []byte(`"x"`))
		if err != nil || string(out) != `"x"` {
			t.Fatalf("call %d: %s, %v", i, out, err)
		}
	}
	var total uint64
	for i, nc := range conns {
		n := nc.Stats().OutMsgs
		total += n
		// Picked at random: each gets about a third; none gets nothing
		// (odds (2/3)^300).
		if n == 0 {
			t.Errorf("connection %d sent no call", i)
		}
	}
	if total != calls {
		t.Errorf("connections sent %d messages in all; want %d, one per call", total, calls)
	}
}

func TestWithConnsSkipsClosedConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{"echo": echo})
	closed1, closed2 := e.conn(t), e.conn(t)
	live := e.conn(t)
	c, err := mesh.NewClient(closed1, mesh.WithConns(closed2, live))
	if err != nil {
		t.Fatal(err)
	}
	closed1.Close()
	closed2.Close()
	for i := range 50 {
		if _, err := c.Invoke(context.Background(), "svc", "echo", nil); err != nil {
			t.Fatalf("call %d with one live connection out of three: %v", i, err)
		}
	}
	live.Close()
	_, err = c.Invoke(context.Background(), "svc", "echo", nil)
	if code := transport.CodeOf(err); code != transport.CodeUnavailable {
		t.Errorf("every connection closed: %v (code %s); want %s", err, code, transport.CodeUnavailable)
	}
}

func TestWithConnsNil(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, nil)
	if _, err := mesh.NewClient(natstest.Connect(t, s), mesh.WithConns(nil)); err == nil {
		t.Error("NewClient with a nil connection in WithConns: no error")
	}
	if _, err := mesh.NewGateway(natstest.Connect(t, s), mesh.WithConns(natstest.Connect(t, s), nil)); err == nil {
		t.Error("NewGateway with a nil connection in WithConns: no error")
	}
}
