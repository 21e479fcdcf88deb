package reliability_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/mesh"
)

// TestErrorBodies makes every kind of failed call and checks each answer:
// the JSON error body, with the request ID the client sent, and none of
// the internals (NATS errors, the function's own error text, a panic's
// stack). For server errors, the gateway's logger (mesh.WithLogger) has a record with the
// same request ID, so an operator can find the cause the caller does not
// see.
func TestErrorBodies(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	startEcho(t, b.ClientURL(), "svc")
	const timeout = 2 * time.Second
	var logs records
	g := newGateway(t, b.Conn(), gatewayConfig{Timeout: timeout, Policy: []authz.Option{authz.Module("params.rego", paramsPolicy)},
		Client: []mesh.ClientOption{mesh.WithLogger(slog.New(&logs))}})
	auth := bearer(token(t, "u1"))
	for i, tc := range []struct {
		path, body, token string
		status            int
		cause             string // in the log record of a server error
	}{
		{"/fn/svc/error", `{}`, auth, 500, ""},
		{"/fn/svc/panic", `{}`, auth, 500, ""},
		{"/fn/svc/fail", `{"status":502}`, auth, 502, ""},
		{"/fn/svc/fail", `{"status":503}`, auth, 503, ""},
		{"/fn/nosuch/echo", `{}`, auth, 503, "no instance of nosuch"},
		{"/fn/svc/nope", `{}`, auth, 404, ""},
		{"/fn/svc/sleep", `{"ms":60000}`, auth, 504, "deadline"},
		{"/fn/any/a.b", `{}`, auth, 400, ""},
		{"/fn/svc/echo", `{"a":`, auth, 400, ""},
		{"/fn/svc/echo", `"` + strings.Repeat("x", bodyLimit) + `"`, auth, 413, ""},
		{"/fn/svc/echo", `{"forbidden":true}`, auth, 403, ""},
		{"/fn/svc/echo", `{}`, "", 401, ""},
		{"/fn/svc/echo", `{}`, "Bearer x.y.z", 401, ""},
		{"/fn/svc/echo", `{}`, bearer(token(t, "u1", "exp", 1)), 401, ""},
	} {
		id := fmt.Sprintf("op-%d", i)
		hdr := []string{"X-Request-Id", id}
		if tc.token != "" {
			hdr = append(hdr, "Authorization", tc.token)
		}
		a := g.do(http.MethodPost, tc.path, strings.NewReader(tc.body), hdr...)
		if a.status != tc.status {
			t.Errorf("%s %.20s: %v; want %d", tc.path, tc.body, a, tc.status)
			continue
		}
		if err := cleanError(a); err != nil {
			t.Errorf("%s %.20s: %v", tc.path, tc.body, err)
		}
		if a.header.Get("X-Request-Id") != id {
			t.Errorf("%s: request ID %q; want the client's %q", tc.path, a.header.Get("X-Request-Id"), id)
		}
		if tc.status >= 500 {
			r, ok := logs.find(id)
			if !ok {
				t.Errorf("%s: no log record with request_id %s", tc.path, id)
			} else if !strings.Contains(r, tc.cause) {
				t.Errorf("%s: log record %q; want the cause %q", tc.path, r, tc.cause)
			}
		}
	}
}

// records is a slog.Handler that keeps each record as text.
type records struct {
	mu    sync.Mutex
	lines []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }

func (r *records) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// find returns the record with request_id id.
func (r *records) find(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, fmt.Sprintf("request_id=%q", id)) {
			return l, true
		}
	}
	return "", false
}
