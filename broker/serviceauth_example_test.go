package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/broker"
)

// Per-service credentials: the payments service may take its own calls, and
// the server refuses it anything else.
func ExampleBroker_ServiceCredentials() {
	ctx := context.Background()
	secret := []byte("a secret of at least 16 bytes, from your config")
	b, err := broker.Start(ctx,
		broker.WithListen("127.0.0.1:0"),
		broker.WithServiceAuth(broker.ServiceAuth{Secret: secret}))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// The host hands these to the payments process (URL, user, password).
	creds, err := b.ServiceCredentials("payments")
	if err != nil {
		log.Fatal(err)
	}

	// In the payments process:
	refused := make(chan error, 1)
	nc, err := nats.Connect(b.ClientURL(), creds.Option(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case refused <- err:
			default:
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	svc, err := micro.AddService(nc, micro.Config{Name: "payments", Version: "1.0.0"})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Stop()
	_ = svc.AddEndpoint("charge", micro.HandlerFunc(func(r micro.Request) {
		_ = r.Respond([]byte("charged " + string(r.Data())))
	}), micro.WithEndpointSubject("fn.payments.charge"))
	_ = nc.Flush()

	// The gateway calls it with the host's identity.
	reply, err := b.Conn().Request("fn.payments.charge", []byte("5"), time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply.Data))

	// Trying to take the orders service's calls fails.
	_, _ = nc.QueueSubscribe("fn.orders.charge", "q", func(*nats.Msg) {})
	err = <-refused
	fmt.Println(errors.Is(err, nats.ErrPermissionViolation))
	// Output:
	// charged 5
	// true
}
