package mesh_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
)

// With per-service credentials the server refuses a subscription the
// identity may not make, asynchronously; NewService and Handle turn that
// refusal into an error instead of a service that can never be reached.
func TestServiceCredentialsRefusedAtRegistration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.WithServiceAuth(broker.ServiceAuth{Secret: []byte("mesh-test-secret-0123456789")}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	creds, err := b.ServiceCredentials("greeter")
	if err != nil {
		t.Fatal(err)
	}
	conn := func() *nats.Conn {
		nc, err := b.NewConn("greeter", creds.Option())
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}

	if _, err := mesh.NewService(conn(), "payments"); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("NewService(payments) with greeter's credentials: %v; want a permissions violation", err)
	}

	svc, err := mesh.NewService(conn(), "greeter", mesh.WithPrefix("other"))
	if err != nil {
		t.Fatalf("NewService(greeter): %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop(ctx) })
	if err := svc.HandleFunc("hello", func(context.Context, *mesh.Call) ([]byte, error) { return nil, nil }); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("Handle on other.greeter.hello: %v; want a permissions violation", err)
	}

	ok, err := mesh.NewService(conn(), "greeter")
	if err != nil {
		t.Fatalf("NewService(greeter) on its own subjects: %v", err)
	}
	t.Cleanup(func() { _ = ok.Stop(ctx) })
	if err := ok.HandleFunc("hello", func(context.Context, *mesh.Call) ([]byte, error) { return []byte(`"hi"`), nil }); err != nil {
		t.Fatalf("Handle on fn.greeter.hello: %v", err)
	}
	client, _ := mesh.NewClient(b.Conn())
	if out, err := client.Invoke(ctx, "greeter", "hello", nil); err != nil || string(out) != `"hi"` {
		t.Fatalf("call = %s, %v", out, err)
	}
}
