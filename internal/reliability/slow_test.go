package reliability_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
)

// TestSlowLoris holds connections open by sending headers or a body a
// byte at a time. With the http.Server's ReadHeaderTimeout and
// ReadTimeout set (here 500ms and 1s; see .readme/reliability.md for the
// values to use), the server cuts each connection at its timeout, however
// long the client would go on, and no function runs.
func TestSlowLoris(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	short := func(s *http.Server) {
		s.ReadHeaderTimeout = 500 * time.Millisecond
		s.ReadTimeout = time.Second
	}
	chains := []struct {
		name string
		g    *gateway
	}{
		{"params", newGateway(t, h.b.Conn(), gatewayConfig{Policy: []authz.Option{authz.Module("params.rego", paramsPolicy)}, Server: short})},
		{"plain", newGateway(t, h.b.Conn(), gatewayConfig{Policy: []authz.Option{authz.RulesJSON([]byte(signedIn))}, Server: short})},
	}
	// The client would trickle for 30s; the connection must be cut well
	// before.
	const trickle, bound = 30 * time.Second, 10 * time.Second
	for _, c := range chains {
		for _, tc := range []struct {
			name string
			head string // sent at once
			drip func(i int) string
		}{
			{"headers", "POST /fn/any/thing HTTP/1.1\r\nHost: gateway\r\n", func(i int) string { return fmt.Sprintf("X-Slow-%d: 1\r\n", i) }},
			{"body", "POST /fn/any/thing HTTP/1.1\r\nHost: gateway\r\nAuthorization: " + bearer(h.tok) + "\r\nContent-Length: 1000\r\n\r\n", func(int) string { return " " }},
		} {
			conn, err := net.Dial("tcp", c.g.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, _ = io.WriteString(conn, tc.head)
			stop := make(chan struct{})
			wrote := make(chan int, 1)
			go func() {
				n := 0
				defer func() { wrote <- n }()
				tick := time.NewTicker(100 * time.Millisecond) // the slow client's pace: the behaviour under test
				defer tick.Stop()
				for time.Since(start) < trickle {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := io.WriteString(conn, tc.drip(n)); err != nil {
						return
					}
					n++
				}
			}()
			_ = conn.SetReadDeadline(time.Now().Add(trickle))
			got, err := io.ReadAll(conn) // until the server closes the connection
			cut := time.Since(start)
			close(stop)
			n := <-wrote
			conn.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || cut > bound {
				t.Errorf("%s, slow %s: the connection was still open after %v (%d writes); want it cut", c.name, tc.name, cut, n)
			}
			if tc.name == "body" && len(got) > 0 {
				// The handler reading the body gets the timeout: a clean
				// 400 (whose write the read deadline does not stop). The
				// client may not see it: the server's close resets a
				// connection the client still writes to, which can drop
				// what the client had not read yet.
				a := parseAnswer(got)
				if a.status != 400 {
					t.Errorf("%s, slow body: %v; want 400", c.name, a)
				} else if err := cleanError(a); err != nil {
					t.Errorf("%s, slow body: %v", c.name, err)
				}
			}
			t.Logf("%s, slow %s: cut after %v, %d slow writes; the server said %q (%v)", c.name, tc.name, cut.Round(time.Millisecond), n, firstLine(got), err)
		}
	}
	if got := subjects(h.rec.sync(t)); len(got) != 0 || h.dump.runs.Load() != 0 {
		t.Errorf("slow requests reached %q; want no call", got)
	}
}

// parseAnswer reads the HTTP response in b.
func parseAnswer(b []byte) answer {
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: body, err: err}
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
