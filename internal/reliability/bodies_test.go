package reliability_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHostileBodies sends hostile bodies through a chain whose policy
// reads params (the authz middleware decodes the body) and one whose
// policy does not (the body passes through as bytes), each with a
// Content-Length and chunked. A body is either refused with a clean error
// and reaches no function, or reaches the function byte for byte.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases := []struct {
		name          string
		body          string
		params, plain int // the status through each chain
	}{
		{"empty", "", 200, 200},
		{"object", `{"a":1}`, 200, 200},
		{"not JSON: truncated", `{"a":`, 400, 200},
		{"not JSON: single quotes", `{'a':1}`, 400, 200},
		{"not JSON: a bare word", `nope`, 400, 200},
		{"not JSON: trailing comma", `[1,2,]`, 400, 200},
		{"not JSON: two documents", `{"a":1}{"b":2}`, 400, 200},
		{"not JSON: NaN", `{"n":NaN}`, 400, 200},
		{"not JSON: binary", "\x00\xff\xfe\x01", 400, 200},
		{"nested 64 deep", nest(64), 200, 200},
		{"nested 65 deep", nest(65), 400, 200},
		{"nested 30000 deep", nest(30000), 400, 200},
		{"huge exponent", `{"n":1e999999}`, 400, 200},
		{"5000 digits", `{"n":` + strings.Repeat("9", 5000) + `}`, 400, 200},
		{"100 digits, compared exactly", `{"n":1` + strings.Repeat("0", 99) + `}`, 403, 200},
		{"101 compared exactly", `{"n":100.0000000000000000000000000001}`, 403, 200},
		{"tiny number", `{"n":1e-1000}`, 200, 200},
		{"the policy forbids", `{"forbidden":true}`, 403, 200},
		{"exactly at the limit", `"` + strings.Repeat("x", bodyLimit-2) + `"`, 200, 200},
		{"one byte over the limit", `"` + strings.Repeat("x", bodyLimit-1) + `"`, 413, 413},
		{"a MiB", `"` + strings.Repeat("x", 1<<20) + `"`, 413, 413},
	}
	for _, tc := range cases {
		for _, chunked := range []bool{false, true} {
			for _, g := range []struct {
				name   string
				g      *gateway
				status int
			}{{"params", h.params, tc.params}, {"plain", h.plain, tc.plain}} {
				var body io.Reader = strings.NewReader(tc.body)
				if chunked {
					body = struct{ io.Reader }{body} // no length: sent chunked
				}
				a := g.g.do(http.MethodPost, "/fn/any/thing", body, "Authorization", bearer(h.tok))
				got := subjects(h.rec.sync(t))
				what := tc.name + " via " + g.name
				if chunked {
					what += ", chunked"
				}
				if a.status != g.status {
					t.Errorf("%s: %v; want %d", what, a, g.status)
					continue
				}
				if a.status != 200 {
					if err := cleanError(a); err != nil {
						t.Errorf("%s: %v", what, err)
					}
					if len(got) != 0 {
						t.Errorf("%s: refused, yet reached %q", what, got)
					}
					continue
				}
				d, err := decodeDump(a)
				if err != nil || !bytes.Equal(d.Params, []byte(tc.body)) || len(got) != 1 {
					t.Errorf("%s: the function got %d bytes (%v), %q; want the %d bytes sent, once", what, len(d.Params), err, got, len(tc.body))
				}
			}
		}
	}
}

// TestHostileBodiesTypedFunction: a function written with mesh.Func
// decodes its params itself, so bodies the gateway passes through
// untouched are refused there, with 400 and a clean error.
func TestHostileBodiesTypedFunction(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	startEcho(t, h.b.ClientURL(), "svc")
	for _, body := range []string{
		`{"ms":1e400}`,
		`{"ms":` + strings.Repeat("9", 5000) + `}`,
		`{"ms":"soon"}`,
		strings.Repeat("[", 30000) + strings.Repeat("]", 30000),
		`{"ms":`,
	} {
		a := h.plain.post("svc", "sleep", body, "Authorization", bearer(h.tok))
		if a.status != 400 {
			t.Errorf("sleep with %.40q: %v; want 400", body, a)
		}
		if err := cleanError(a); err != nil {
			t.Error(err)
		}
	}
	if n := counts(t, h.plain, "svc", "Authorization", bearer(h.tok))["sleep"]; n != 5 {
		t.Errorf("sleep ran %d times; want 5, each refusing its params", n)
	}
}
