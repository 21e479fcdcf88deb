package mesh_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

// TestMaxPayloadAfterReconnect: after a reconnect to a server with
// another max payload, bodies are judged by the server's current one.
func TestMaxPayloadAfterReconnect(t *testing.T) {
	t.Parallel()
	const small, large = 16 << 10, 1 << 20
	s := natstest.Start(t, &server.Options{MaxPayload: small})
	port := s.Addr().(*net.TCPAddr).Port
	opts := []nats.Option{nats.ReconnectWait(10 * time.Millisecond), nats.MaxReconnects(-1)}
	nc := natstest.Connect(t, s, opts...)
	svcConn := natstest.Connect(t, s, opts...)
	gw, err := mesh.NewGateway(nc)
	if err != nil {
		t.Fatal(err)
	}
	startService(t, svcConn, "svc", map[string]mesh.Handler{"echo": echo})
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", gw)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	url := srv.URL + "/fn/svc/echo"

	post := func(n int) response { return postURL(t, url, `"`+strings.Repeat("y", n-2)+`"`) }
	if r := post(8 << 10); r.status != 200 {
		t.Fatalf("8 KB body, max payload 16 KB: %d %s", r.status, r.body)
	}
	restart := func(maxPayload int32) {
		t.Helper()
		s.Shutdown()
		s.WaitForShutdown()
		s = natstest.Start(t, &server.Options{Port: port, MaxPayload: maxPayload})
		eventually(t, "both connections to reconnect and the service to answer", func() bool {
			return nc.MaxPayload() == int64(maxPayload) && svcConn.IsConnected() && post(100).status == 200
		})
	}

	restart(large)
	if r := post(200 << 10); r.status != 200 || len(r.body) != 200<<10 {
		t.Errorf("200 KB body after the max payload grew to 1 MB: %d, %d bytes; want 200", r.status, len(r.body))
	}
	restart(small)
	if r := post(32 << 10); r.status != 413 || r.errCode() != transport.CodeTooLarge {
		t.Errorf("32 KB body after the max payload shrank to 16 KB: %d %s; want 413", r.status, r.body)
	}
	if r := post(8 << 10); r.status != 200 {
		t.Errorf("8 KB body after the max payload shrank to 16 KB: %d %s; want 200", r.status, r.body)
	}
}

// TestBodyLimitOnePlace: middleware.BodyLimit is the one place the body
// limit is set. Behind BodyLimit(2 MiB) a policy that reads the params
// and the gateway both take a 1.5 MiB body, above the 1 MiB they read
// without it, and a body over 2 MiB is 413; without BodyLimit the same
// 1.5 MiB body is 413.
func TestBodyLimitOnePlace(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, &server.Options{MaxPayload: 4 << 20})
	gw, err := mesh.NewGateway(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	startService(t, natstest.Connect(t, s), "svc", map[string]mesh.Handler{"echo": echo})
	policy, err := authz.New(context.Background(), authz.Module("p.rego", "package funcmesh.authz\n\nallow if count(input.params.pad) > 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = policy.Close() })
	mux := http.NewServeMux()
	mux.Handle("POST /limited/{service}/{function}", middleware.BodyLimit(2<<20)(policy.Middleware(gw)))
	mux.Handle("POST /default/{service}/{function}", policy.Middleware(gw))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	body := func(n int) string { return `{"pad":"` + strings.Repeat("y", n-10) + `"}` }
	for _, tc := range []struct {
		path   string
		size   int
		status int
	}{
		{"/limited/svc/echo", 3 << 19, 200},
		{"/limited/svc/echo", 5 << 19, 413},
		{"/default/svc/echo", 3 << 19, 413},
		{"/default/svc/echo", 1 << 19, 200},
	} {
		r := postURL(t, srv.URL+tc.path, body(tc.size))
		if r.status != tc.status || (r.status == 200 && len(r.body) != tc.size) {
			t.Errorf("%s with %d bytes: %d, %d bytes back; want %d", tc.path, tc.size, r.status, len(r.body), tc.status)
		}
	}
}
