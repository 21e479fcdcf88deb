package broker_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/broker"
)

// busyPort holds a loopback port for the test's duration.
func busyPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// freePort returns a loopback address nothing listens on (as far as a test
// can tell: it was free a moment ago).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestStartBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.creds")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.creds")
	busy := busyPort(t)
	for _, tc := range []struct {
		name string
		opts []broker.StartOption
		want string // in the error's text
	}{
		{"client port in use", []broker.StartOption{broker.WithListen(busy)}, "address already in use"},
		{"cluster port in use", []broker.StartOption{broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Listen: busy})}, "address already in use"},
		{"listen without port", []broker.StartOption{broker.WithListen("localhost")}, "missing port"},
		{"listen port out of range", []broker.StartOption{broker.WithListen("127.0.0.1:70000")}, "port \"70000\""},
		{"listen port not a number", []broker.StartOption{broker.WithListen("127.0.0.1:http")}, "port \"http\""},
		{"negative max payload", []broker.StartOption{broker.WithMaxPayload(-1)}, "negative size"},
		{"huge max payload", []broker.StartOption{broker.WithMaxPayload(broker.MaxPayloadLimit + 1)}, "above the limit"},
		{"negative reconnect buffer", []broker.StartOption{broker.WithReconnectBuffer(-5)}, "negative size"},
		{"zero backoff", []broker.StartOption{broker.WithReconnectBackoff(0, time.Second)}, "0 < min <= max"},
		{"backoff min above max", []broker.StartOption{broker.WithReconnectBackoff(time.Second, time.Millisecond)}, "0 < min <= max"},
		{"jetstream without dir", []broker.StartOption{broker.WithJetStream("")}, "empty store directory"},
		{"cluster without client listener", []broker.StartOption{broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0"})}, "needs WithListen"},
		{"cluster without listen", []broker.StartOption{broker.WithListen("127.0.0.1:0"), broker.WithCluster(broker.Cluster{})}, "Listen is required"},
		{"bad route URL", []broker.StartOption{broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0", Routes: []string{"nats://a b:1"}})}, "malformed URL"},
		{"route with wrong scheme", []broker.StartOption{broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0", Routes: []string{"http://host:6222"}})}, `scheme "http"`},
		{"route without port", []broker.StartOption{broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0", Routes: []string{"nats://host"}})}, "host:port"},
		{"route URL hides its password", []broker.StartOption{broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0", Routes: []string{"http://u:hunter2@host:1"}})}, "xxxxx"},
		{"cluster user without password", []broker.StartOption{broker.WithListen("127.0.0.1:0"),
			broker.WithCluster(broker.Cluster{Listen: "127.0.0.1:0", User: "u"})}, "both User and Password"},
		{"leaf without URLs", []broker.StartOption{broker.WithLeafNodes(broker.LeafRemote{})}, "no URLs"},
		{"bad leaf URL", []broker.StartOption{broker.WithLeafNodes(broker.LeafRemote{URLs: []string{"::"}})}, "malformed URL"},
		{"unreadable leaf credentials", []broker.StartOption{broker.WithLeafNodes(broker.LeafRemote{
			URLs: []string{"nats-leaf://127.0.0.1:7422"}, Credentials: missing})}, "no such file"},
		{"empty leaf credentials", []broker.StartOption{broker.WithLeafNodes(broker.LeafRemote{
			URLs: []string{"nats-leaf://127.0.0.1:7422"}, Credentials: empty})}, "empty"},
		{"TLS without listener", []broker.StartOption{broker.WithListenTLS(&tls.Config{})}, "needs WithListen"},
		{"TLS without certificate", []broker.StartOption{broker.WithListen("127.0.0.1:0"), broker.WithListenTLS(&tls.Config{})}, "no certificate"},
		{"short secret", []broker.StartOption{broker.WithServiceAuth(broker.ServiceAuth{Secret: []byte("short")})}, "at least 16"},
		{"bad prefix", []broker.StartOption{broker.WithServiceAuth(broker.ServiceAuth{Prefix: "fn.>"})}, "prefix"},
		{"negative reply window", []broker.StartOption{broker.WithServiceAuth(broker.ServiceAuth{ReplyWindow: -time.Second})}, "negative ReplyWindow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := broker.Start(ctx, tc.opts...)
			if err == nil {
				b.Close()
				t.Fatalf("Start succeeded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "broker: ") {
				t.Fatalf("Start: %v; want a broker error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q shows a password", err)
			}
		})
	}
}

func TestStartCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b, err := broker.Start(ctx); err == nil {
		b.Close()
		t.Fatal("Start with a canceled context succeeded")
	}
}

func TestConnectBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.creds")
	up := start(t, broker.WithListen("127.0.0.1:0")).ClientURL()
	for _, tc := range []struct {
		name string
		urls []string
		opts []broker.ConnectOption
		want string
	}{
		{"no URLs", nil, nil, "no server URLs"},
		{"URL without scheme", []string{"localhost:4222"}, nil, "scheme"},
		{"URL with wrong scheme", []string{"http://localhost:4222"}, nil, `scheme "http"`},
		{"malformed URL", []string{"nats://a b"}, nil, "malformed URL"},
		{"one bad URL of two", []string{up, "nats://"}, nil, "host:port"},
		{"unreadable credentials file", []string{up}, []broker.ConnectOption{broker.WithCredentialsFile(missing)}, "no such file"},
		{"two kinds of auth", []string{up}, []broker.ConnectOption{broker.WithToken("t"), broker.WithUserInfo("u", "p")}, "use one of"},
		{"negative reconnect buffer", []string{up}, []broker.ConnectOption{broker.WithReconnectBuffer(-1)}, "negative size"},
		{"nothing listening", []string{"nats://" + freePort(t)}, nil, "no servers available"},
		{"password hidden", []string{"nats://u:hunter2@" + freePort(t)}, nil, "nats://u:xxxxx@"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := broker.Connect(ctx, tc.urls, tc.opts...)
			if err == nil {
				b.Close()
				t.Fatalf("Connect succeeded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "broker: ") {
				t.Fatalf("Connect: %v; want a broker error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q shows a password", err)
			}
		})
	}
}

// TestFailedStartReleasesPort: a Start that fails leaves nothing running, so
// the same configuration works once the conflict is gone.
func TestFailedStartReleasesPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	clusterAddr := freePort(t)
	opts := []broker.StartOption{broker.WithListen(addr), broker.WithCluster(broker.Cluster{Listen: clusterAddr})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := broker.Start(ctx, opts...); err == nil {
		b.Close()
		t.Fatal("Start on a busy port succeeded")
	}
	l.Close()
	// The failed server is stopped in the background: poll.
	var b *broker.Broker
	waitFor(t, 10*time.Second, "a start on the freed ports", func() bool {
		b, err = broker.Start(ctx, opts...)
		return err == nil
	})
	b.Close()
}
