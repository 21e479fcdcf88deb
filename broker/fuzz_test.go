package broker_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/transport"
)

// FuzzServiceAuth connects with arbitrary user names and passwords, the
// outside input the authenticator parses: a connection is accepted exactly
// when they are the credentials the Broker would hand out, and the server
// never fails.
func FuzzServiceAuth(f *testing.F) {
	b := start(f, broker.WithListen("127.0.0.1:0"), broker.WithServiceAuth(broker.ServiceAuth{Secret: testSecret}))
	host, _ := b.HostCredentials()
	pay, _ := b.ServiceCredentials("payments")
	for _, seed := range [][2]string{
		{pay.User, pay.Password}, {host.User, host.Password}, {"payments", host.Password},
		{"orders", pay.Password}, {"", ""}, {"a.b", "x"}, {"payments", ""}, {"payments\x00", pay.Password},
		{"$G", ""}, {"funcmesh.host", ""}, {"\"}", "\\u0000"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, user, password string) {
		want := false
		if user == broker.HostUser {
			want = password == host.Password
		} else if transport.ValidateName(user) == nil {
			c, err := b.ServiceCredentials(user)
			want = err == nil && password == c.Password
		}
		nc, err := nats.Connect(b.ClientURL(), nats.UserInfo(user, password), nats.NoReconnect(), nats.Timeout(5*time.Second))
		if nc != nil {
			nc.Close()
		}
		if got := err == nil; got != want {
			t.Fatalf("connect as %q with %q: err = %v; want accepted %v", user, password, err, want)
		}
		if !b.Server().Running() {
			t.Fatal("the server stopped")
		}
	})
}
