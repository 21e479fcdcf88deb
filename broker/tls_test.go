package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "broker test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestListenTLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	b := start(t, broker.WithListen("127.0.0.1:0"),
		broker.WithListenTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		broker.WithServiceAuth(broker.ServiceAuth{}))
	if !strings.HasPrefix(b.ClientURL(), "tls://127.0.0.1:") {
		t.Fatalf("ClientURL() = %q; want tls://127.0.0.1:<port>", b.ClientURL())
	}
	creds, _ := b.ServiceCredentials("payments")

	// Without TLS, refused.
	plain := "nats" + strings.TrimPrefix(b.ClientURL(), "tls")
	if nc, err := nats.Connect(plain, creds.Option(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a plain-text client was accepted by a TLS listener")
	}
	// With TLS, through connect mode too.
	remote := connect(t, []string{b.ClientURL()}, broker.WithTLS(&tls.Config{RootCAs: pool}),
		broker.WithUserInfo(creds.User, creds.Password))
	if _, err := remote.Conn().QueueSubscribe("fn.payments.x", "q", func(m *nats.Msg) { _ = m.Respond([]byte("over tls")) }); err != nil {
		t.Fatal(err)
	}
	if err := remote.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	// In-process connections are not affected.
	start := time.Now()
	request(t, b.Conn(), "fn.payments.x", "", "over tls")
	c, err := b.NewConn("inproc")
	if err != nil {
		t.Fatal(err)
	}
	request(t, c, "fn.payments.x", "", "over tls")
	if d := time.Since(start); d > time.Second {
		t.Errorf("in-process requests took %v with TLS on the listener", d)
	}
}
