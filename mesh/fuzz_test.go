package mesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

type namesKey struct{}

// FuzzGatewayNames sends calls with arbitrary service and function names
// and bodies through the gateway: a call whose names are valid reaches
// exactly prefix.service.function with the body unchanged; any other is
// answered 400 and sends nothing.
func FuzzGatewayNames(f *testing.F) {
	for _, seed := range [][3]string{
		{"svc", "fn", `{}`}, {"a.b", "c", ""}, {"a", "b.c", ""}, {"*", ">", ""}, {"a b", "c", ""},
		{"", "f", ""}, {"fn", "x", "\x00\xff"}, {"é", "f", ""}, {"a\r\nPUB x 1", "f", ""},
		{"x", "$SRV", ""}, {"_INBOX", "y", ""}, {"ok-name_1", "F-2", `"x"`},
	} {
		f.Add(seed[0], seed[1], []byte(seed[2]))
	}
	s := natstest.Start(f, nil)
	sub := natstest.Connect(f, s)
	var received atomic.Int64
	// A wildcard responder sees every subject a call could reach and
	// answers with the subject and the body it got.
	if _, err := sub.Subscribe(">", func(m *nats.Msg) {
		if m.Reply == "" || len(m.Subject) > 0 && m.Subject[0] == '$' {
			return
		}
		received.Add(1)
		_ = m.Respond(append([]byte(m.Subject+"\n"), m.Data...))
	}); err != nil {
		f.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		f.Fatal(err)
	}
	gw, err := mesh.NewGateway(natstest.Connect(f, s))
	if err != nil {
		f.Fatal(err)
	}
	gw.Route = func(r *http.Request) (string, string) {
		n := r.Context().Value(namesKey{}).([2]string)
		return n[0], n[1]
	}
	f.Fuzz(func(t *testing.T, service, function string, body []byte) {
		before := received.Load()
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req = req.WithContext(context.WithValue(req.Context(), namesKey{}, [2]string{service, function}))
		rec := httptest.NewRecorder()
		start := time.Now()
		gw.ServeHTTP(rec, req)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("names %q %q body %q: took %v: %d %s", service, function, body, d, rec.Code, rec.Body)
		}
		valid := transport.ValidateName(service) == nil && transport.ValidateName(function) == nil
		if !valid {
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("names %q %q: status %d; want 400", service, function, rec.Code)
			}
			if got := received.Load(); got != before {
				t.Fatalf("names %q %q: a message was sent", service, function)
			}
			return
		}
		want := append([]byte("fn."+service+"."+function+"\n"), body...)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) {
			t.Fatalf("names %q %q: %d %q; want 200 %q", service, function, rec.Code, rec.Body.Bytes(), want)
		}
	})
}

// FuzzServiceHeaders sends a service requests with arbitrary Mesh-* and
// trace headers: it always answers (never hangs or dies), with the
// function's result or a 400/504 error, and a function only ever sees
// claims that form a JSON object and a request ID safe to log.
func FuzzServiceHeaders(f *testing.F) {
	future := transport.FormatDeadline(time.Now().Add(time.Hour))
	for _, seed := range [][5]string{
		{`{"sub":"u"}`, future, "req-1", "a.b", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"", "", "", "", ""},
		{"{", "0", " ", ".", "zz"},
		{"[]", "-1", "a\x00b", "a.b.c", "00-00000000000000000000000000000000-0000000000000000-00"},
		{`{"a":1}{}`, "99999999999999999999", "é", "*.>", ""},
		{"null", "1", "\r\n", "a.", "ff-x"},
		{`{"n":1e999}`, future + "0", "x", "svc.fn", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	s := natstest.Start(f, nil)
	nc := natstest.Connect(f, s)
	svc, err := mesh.NewService(natstest.Connect(f, s), "svc")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Stop(context.Background()) })
	err = svc.HandleFunc("probe", func(_ context.Context, c *mesh.Call) ([]byte, error) {
		claims, ok := c.Claims()
		raw, rawOK := c.ClaimsJSON()
		if ok != rawOK || ok && claims == nil {
			return nil, transport.NewError(transport.CodeInternal, "claims inconsistent")
		}
		if ok && !json.Valid(raw) {
			return nil, transport.NewError(transport.CodeInternal, "claims not JSON")
		}
		for _, b := range []byte(c.RequestID()) {
			if b <= ' ' || b > '~' {
				return nil, transport.NewError(transport.CodeInternal, "unsafe request ID")
			}
		}
		return []byte("ok"), nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, auth, deadline, requestID, caller, traceparent string) {
		h := nats.Header{}
		for k, v := range map[string]string{
			transport.HeaderAuth: auth, transport.HeaderDeadline: deadline, transport.HeaderRequestID: requestID,
			transport.HeaderCaller: caller, transport.HeaderTraceparent: traceparent,
		} {
			if v != "" {
				h.Set(k, v)
			}
		}
		m, err := nc.RequestMsg(&nats.Msg{Subject: "fn.svc.probe", Header: h}, 5*time.Second)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		if e := transport.ErrorFromHeaders(m.Header); e != nil {
			if s := e.HTTPStatus(); s != 400 && s != 504 {
				t.Fatalf("headers %q: status %d %q; want 400 or 504", h, s, e.Message())
			}
			return
		}
		if string(m.Data) != "ok" {
			t.Fatalf("headers %q: reply %q", h, m.Data)
		}
		if _, err := strconv.Atoi(deadline); err == nil && deadline != "" && deadline[0] == '-' {
			t.Fatalf("negative deadline %q accepted", deadline)
		}
	})
}
