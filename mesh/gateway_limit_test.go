package mesh_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// TestMaxPayloadAfterReconnect: the gateway keeps the broker's max payload
// rather than reading it (under the connection's lock) on every request;
// after a reconnect to a server with another setting, bodies are still
// judged by the server's current one.
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
