package reliability_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/transport"
)

// forgedHeaders are headers a client sends to pass for someone else or
// to steer the call: the contract's own, NATS's reply headers, trace
// context, and others.
var forgedHeaders = []string{
	`Mesh-Auth: {"sub":"admin","role":"admin"}`,
	`mesh-auth: {"sub":"root"}`,
	`Mesh-Caller: billing.refund`,
	`MESH-CALLER: billing.refund`,
	`Mesh-Request-Id: forged-request-id`,
	`Mesh-Deadline: 99999999999999`,
	`Mesh-Anything: x`,
	`Nats-Service-Error: forged`,
	`Nats-Service-Error-Code: 200`,
	`Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01`,
	`Tracestate: forged=1`,
	`X-Forwarded-For: 10.0.0.1`,
	`Cookie: session=abc`,
	`X-Custom: 1`,
}

// checkForwarded returns what is wrong with the headers a function got
// for a call answered with a: only the contract's headers, set by the
// mesh: the verified claims of sub (none when sub is "", an anonymous
// caller), the response's request ID, a deadline within the call timeout.
func checkForwarded(h map[string][]string, a answer, sub string, timeout time.Duration) error {
	for k := range h {
		if !contractHeaders[k] {
			return fmt.Errorf("header %s = %q reached the function", k, h[k])
		}
	}
	var claims map[string]any
	if v := h[transport.HeaderAuth]; sub == "" && len(v) != 0 {
		return fmt.Errorf("an anonymous call carried Mesh-Auth %q", v)
	} else if sub != "" && (len(v) != 1 || json.Unmarshal([]byte(v[0]), &claims) != nil || claims["sub"] != sub) {
		return fmt.Errorf("Mesh-Auth %q; want the verified claims of %s", v, sub)
	}
	if v := h[transport.HeaderRequestID]; len(v) != 1 || v[0] != a.header.Get("X-Request-Id") {
		return fmt.Errorf("Mesh-Request-Id %q; want the response's %q", v, a.header.Get("X-Request-Id"))
	}
	v := h[transport.HeaderDeadline]
	if len(v) != 1 {
		return fmt.Errorf("Mesh-Deadline %q", v)
	}
	d, err := transport.ParseDeadline(v[0])
	if err != nil || time.Until(d) > timeout {
		return fmt.Errorf("Mesh-Deadline %q (%v); want within the %v call timeout", v, d, timeout)
	}
	// The claims travel signed by the host, bound to the request ID and
	// the deadline.
	if c := h[transport.HeaderAuth]; len(c) == 1 {
		if err := signer.Verify(strings.Join(h[transport.HeaderAuthSig], ""), c[0], h[transport.HeaderRequestID][0], d, time.Now()); err != nil {
			return fmt.Errorf("Mesh-Auth-Sig %q: %v", h[transport.HeaderAuthSig], err)
		}
	} else if s := h[transport.HeaderAuthSig]; len(s) != 0 {
		return fmt.Errorf("an anonymous call carried Mesh-Auth-Sig %q", s)
	}
	return nil
}

// TestHostileHeaders: headers a client sends never reach a function; the
// function sees the contract's headers, set by the mesh. Oversized
// headers are refused by net/http (431) before any handler runs.
func TestHostileHeaders(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	startEcho(t, h.b.ClientURL(), "svc")
	auth := "Authorization: " + bearer(h.tok)
	many := make([]string, 2000) // 2000 headers, some 40 KB: under MaxHeaderBytes
	for i := range many {
		many[i] = fmt.Sprintf("X-Many-%d: value-%d", i, i)
	}
	tooMany := make([]string, 5000) // some 100 KB
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("X-Many-%d: value-%d", i, i)
	}

	for _, g := range []struct {
		name string
		g    *gateway
	}{{"params", h.params}, {"plain", h.plain}, {"bare", h.bare}} {
		sub := "u1"
		if g.g == h.bare {
			sub = "" // no JWT middleware: anonymous
		}
		for _, tc := range []struct {
			name string
			hdr  []string
		}{
			{"forged", forgedHeaders},
			{"many", many},
		} {
			a := g.g.raw(http.MethodPost, "/fn/any/thing", []byte(`{}`), append([]string{auth}, tc.hdr...)...)
			msgs := h.rec.sync(t)
			d, err := decodeDump(a)
			if err != nil {
				t.Errorf("%s, %s headers: %v", g.name, tc.name, err)
				continue
			}
			if err := checkForwarded(d.Header, a, sub, g.g.timeout); err != nil {
				t.Errorf("%s, %s headers: %v", g.name, tc.name, err)
			}
			// What went over NATS, seen by the recorder, is the same.
			for _, m := range msgs {
				if m.Subject != "fn.any.thing" {
					continue
				}
				for k := range m.Header {
					if !contractHeaders[k] {
						t.Errorf("%s, %s headers: %s went over NATS", g.name, tc.name, k)
					}
				}
			}
		}

		// A function written with mesh sees the verified caller only.
		a := g.g.raw(http.MethodPost, "/fn/svc/whoami", []byte(`{}`), append([]string{auth}, forgedHeaders...)...)
		h.rec.sync(t)
		w := decodeWho(t, a)
		if got, _ := w.Claims["sub"].(string); got != sub || w.Claims["role"] == "admin" || w.Caller == "billing.refund" || w.RequestID != a.header.Get("X-Request-Id") {
			t.Errorf("%s: whoami saw %+v; want the verified claims of %q, no caller, request ID %s", g.name, w, sub, a.header.Get("X-Request-Id"))
		}

		// Too large for the server: 431 from net/http, no call.
		for _, hdr := range [][]string{{auth, "X-Big: " + strings.Repeat("x", 80<<10)}, append([]string{auth}, tooMany...)} {
			a := g.g.raw(http.MethodPost, "/fn/any/thing", []byte(`{}`), hdr...)
			if a.status != 431 {
				t.Errorf("%s: %d bytes of headers: %v; want 431", g.name, len(strings.Join(hdr, "")), a)
			}
			if got := subjects(h.rec.sync(t)); len(got) != 0 {
				t.Errorf("%s: oversized headers reached %q", g.name, got)
			}
		}
	}

	// A request ID the client sends is kept when well-formed, replaced
	// when it could smuggle anything.
	for id, keep := range map[string]bool{
		"trace-abc-123":         true,
		"a b":                   false,
		`x","role":"admin`:      false,
		strings.Repeat("i", 65): false,
		"id\tctl":               false,
		"id;drop":               false,
	} {
		a := h.plain.raw(http.MethodPost, "/fn/any/thing", []byte(`{}`), auth, "X-Request-Id: "+id)
		d, err := decodeDump(a)
		if err != nil {
			t.Errorf("X-Request-Id %q: %v", id, err)
			continue
		}
		got := a.header.Get("X-Request-Id")
		if (got == id) != keep || d.Header[transport.HeaderRequestID][0] != got {
			t.Errorf("X-Request-Id %q: answered with %q, the function got %q; want it kept: %v", id, got, d.Header[transport.HeaderRequestID], keep)
		}
	}
	h.rec.sync(t)
}
