package broker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
)

// BenchmarkRequest is a request/reply round trip of 100 bytes from the
// host's connection to a service on its own connection: in process, over
// loopback TCP, and in process with service authorization (the service's
// replies checked against its permissions).
func BenchmarkRequest(b *testing.B) {
	payload := make([]byte, 100)
	for _, bc := range []struct {
		name    string
		opts    []broker.StartOption
		service func(*testing.B, *broker.Broker) *nats.Conn
	}{
		{"inprocess", nil, func(b *testing.B, br *broker.Broker) *nats.Conn {
			nc, err := br.NewConn("svc")
			if err != nil {
				b.Fatal(err)
			}
			return nc
		}},
		{"tcp", []broker.StartOption{broker.WithListen("127.0.0.1:0")}, func(b *testing.B, br *broker.Broker) *nats.Conn {
			nc, err := nats.Connect(br.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			return nc
		}},
		{"inprocess-serviceauth", []broker.StartOption{broker.WithServiceAuth(broker.ServiceAuth{})}, func(b *testing.B, br *broker.Broker) *nats.Conn {
			creds, err := br.ServiceCredentials("svc")
			if err != nil {
				b.Fatal(err)
			}
			nc, err := br.NewConn("svc", creds.Option())
			if err != nil {
				b.Fatal(err)
			}
			return nc
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := start(b, bc.opts...)
			svc := bc.service(b, br)
			if _, err := svc.QueueSubscribe("fn.svc.echo", "q", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
				b.Fatal(err)
			}
			if err := svc.Flush(); err != nil {
				b.Fatal(err)
			}
			nc := br.Conn()
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := nc.Request("fn.svc.echo", payload, 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
