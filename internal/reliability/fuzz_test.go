package reliability_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/transport"
)

// serveRaw parses a request written byte for byte, as net/http's server
// would, and serves it with handler; ok is false when net/http would have
// refused the request line or headers itself (with a plain 400) before
// any handler ran.
func serveRaw(handler http.Handler, raw string) (a answer, req *http.Request, ok bool) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return answer{}, nil, false
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	res := rec.Result()
	return answer{status: res.StatusCode, header: res.Header, body: rec.Body.Bytes()}, req, true
}

// intended returns the service and function the mux reads from a path
// "/fn/{service}/{function}": each escaped segment decoded once.
func intended(req *http.Request) (service, function string, ok bool) {
	segs := strings.Split(req.URL.EscapedPath(), "/")
	if len(segs) != 4 || segs[0] != "" || segs[1] != "fn" {
		return "", "", false
	}
	s, err1 := url.PathUnescape(segs[2])
	f, err2 := url.PathUnescape(segs[3])
	return s, f, err1 == nil && err2 == nil
}

// checkSubjects returns what is wrong with the subjects one request
// reached: at most one function subject, with valid names, and
// discovery probes for a valid service only.
func checkSubjects(msgs []*nats.Msg) (call string, err error) {
	for _, s := range subjects(msgs) {
		if svc, ok := strings.CutPrefix(s, "$SRV.INFO."); ok && transport.ValidateName(svc) == nil {
			continue
		}
		svc, fn, ok := transport.SplitSubject(transport.DefaultPrefix, s)
		if !ok || transport.ValidateName(svc) != nil || transport.ValidateName(fn) != nil || s != "fn."+svc+"."+fn {
			return "", fmt.Errorf("a message on %q", s)
		}
		if call != "" {
			return "", fmt.Errorf("two calls: %q and %q", call, s)
		}
		call = s
	}
	return call, nil
}

// FuzzNames sends requests whose path holds any service and function
// segments through the whole chain: a call is made only with valid
// names, on exactly the subject they name; every other request is
// refused (the chain's 400, the mux's 404 or redirect) without a message
// on the broker; error bodies are clean.
func FuzzNames(f *testing.F) {
	h := newHostile(f)
	h.dump.all.Store(true)
	auth := bearer(h.tok)
	for _, seed := range [][2]string{
		{"any", "thing"}, {"an%79", "th%69ng"}, {"a.b", "c"}, {"%2E", "thing"}, {"%2e%2e", "x"},
		{"*", ">"}, {"%2A", "%3E"}, {"a%2Fb", "c"}, {"", "x"}, {".", "x"}, {"..", "x"},
		{"%20", "x"}, {"a%00b", "x"}, {"a%0D%0Ab", "x"}, {"%EF%BD%85cho", "x"}, {"%252E", "x"},
		{"%25", "x"}, {"x", "y#z"}, {"x", "y?z=1"}, {strings.Repeat("a", 64), "x"}, {strings.Repeat("a", 65), "x"},
		{"svc", "x"}, {"x", "y/z"}, {"x%C0%AE", "y"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, service, function string) {
		raw := "POST /fn/" + service + "/" + function + " HTTP/1.1\r\nHost: gateway\r\nAuthorization: " + auth + "\r\nContent-Length: 2\r\n\r\n{}"
		a, req, ok := serveRaw(h.params.handler, raw)
		if !ok {
			return
		}
		call, err := checkSubjects(h.rec.sync(t))
		if err != nil {
			t.Fatalf("%q: %v", req.RequestURI, err)
		}
		if call != "" {
			s, f, ok := intended(req)
			if !ok || call != "fn."+s+"."+f {
				t.Fatalf("%q reached %q; want the subject of the names in the path", req.RequestURI, call)
			}
		}
		switch {
		case a.status == 200:
			d, err := decodeDump(a)
			if err != nil || call == "" || d.Subject != call {
				t.Fatalf("%q: 200 from %q (%v); the broker saw %q", req.RequestURI, d.Subject, err, call)
			}
		case call != "":
			t.Fatalf("%q: %v, yet it reached %q", req.RequestURI, a, call)
		case a.status == 400 || a.status == 404 || a.status == 307 || a.status == 301:
		default:
			t.Fatalf("%q: %v; want 200, 400, 404 or a redirect", req.RequestURI, a)
		}
		if a.header.Get("X-Request-Id") != "" && a.status >= 400 {
			if err := cleanError(a); err != nil {
				t.Fatalf("%q: %v", req.RequestURI, err)
			}
		}
	})
}

// framing are the headers that change how the body is read; when the
// fuzzer sets one, the body a function gets is not simply the one sent.
var framing = []string{"Content-Length", "Transfer-Encoding", "Content-Encoding", "Expect", "Te", "Trailer", "Connection"}

// FuzzRequests sends any body, Content-Type and one more header through
// the chain whose policy reads params and the one whose policy does not:
// the answer is the function's (which got the body byte for byte and only
// the contract's headers) or a clean refusal that reached no function.
func FuzzRequests(f *testing.F) {
	h := newHostile(f)
	auth := bearer(h.tok)
	f.Add([]byte(`{"a":1}`), "application/json", "X-Custom", "1", false)
	f.Add([]byte(`{"a":`), "application/json", "Mesh-Auth", `{"sub":"admin"}`, false)
	f.Add([]byte(`[[[[[[[[[[]]]]]]]]]]`), "text/plain", "Mesh-Caller", "billing.refund", true)
	f.Add([]byte(`{"n":1e999999}`), "", "Mesh-Deadline", "99999999999999", false)
	f.Add([]byte(`{"forbidden":true}`), "application/json", "Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false)
	f.Add([]byte("\x00\xff"), "application/octet-stream", "Transfer-Encoding", "chunked", true)
	f.Add([]byte(`"`+strings.Repeat("x", 100)+`"`), strings.Repeat("a", 300), "Content-Length", "5", false)
	f.Add([]byte(`{}`), "application/json", "X-Request-Id", `x","role":"admin`, true)
	f.Add([]byte(`{}`), "application/json", "Authorization", "Bearer x", false)
	f.Fuzz(func(t *testing.T, body []byte, contentType, name, value string, plain bool) {
		g := h.params
		if plain {
			g = h.plain
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "POST /fn/any/thing HTTP/1.1\r\nHost: gateway\r\nAuthorization: %s\r\n", auth)
		if contentType != "" {
			fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
		}
		fmt.Fprintf(&b, "%s: %s\r\nContent-Length: %d\r\n\r\n", name, value, len(body))
		b.Write(body)
		a, req, ok := serveRaw(g.handler, b.String())
		if !ok {
			return
		}
		call, err := checkSubjects(h.rec.sync(t))
		if err != nil {
			t.Fatalf("%v", err)
		}
		if a.status != 200 {
			if call != "" {
				t.Fatalf("%v, yet it reached %q", a, call)
			}
			if !slices.Contains([]int{400, 401, 403, 413}, a.status) {
				t.Fatalf("%v; want 200 or 400, 401, 403, 413", a)
			}
			if err := cleanError(a); err != nil {
				t.Fatal(err)
			}
			return
		}
		d, err := decodeDump(a)
		if err != nil || call != "fn.any.thing" || d.Subject != call {
			t.Fatalf("200 from %q (%v); the broker saw %q", d.Subject, err, call)
		}
		if err := checkForwarded(d.Header, a, "u1", g.timeout); err != nil {
			t.Fatal(err)
		}
		// Unless the fuzzed header changed the framing (a framing header,
		// or a line break that ends the headers early), the function got
		// the body sent.
		sameFraming := !slices.Contains(framing, http.CanonicalHeaderKey(name)) &&
			!strings.ContainsAny(name+value, "\r\n") && req.ContentLength == int64(len(body))
		if sameFraming && !bytes.Equal(d.Params, body) {
			t.Fatalf("the function got %q; want the body sent, %q", d.Params, body)
		}
		if ct := req.Header.Get("Content-Type"); d.Header.Get("Content-Type") != ct {
			t.Fatalf("the function got Content-Type %q; want the request's %q", d.Header.Get("Content-Type"), ct)
		}
	})
}

// FuzzTokens sends any bearer token: a call is made only with a token
// that golang-jwt, on its own, verifies with the key as HS256, and then
// carries that token's claims; anything else is a clean 401 that reached
// no function.
func FuzzTokens(f *testing.F) {
	h := newHostile(f)
	h.dump.all.Store(true)
	f.Add(h.tok)
	f.Add("")
	for _, hdr := range badTokens(f) {
		if tok, ok := strings.CutPrefix(hdr[0], "Authorization: Bearer "); ok {
			f.Add(tok)
		}
	}
	f.Fuzz(func(t *testing.T, tok string) {
		raw := "POST /fn/any/thing HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + tok + "\r\nContent-Length: 2\r\n\r\n{}"
		a, _, ok := serveRaw(h.params.handler, raw)
		if !ok {
			return
		}
		call, err := checkSubjects(h.rec.sync(t))
		if err != nil {
			t.Fatal(err)
		}
		switch a.status {
		case 200:
			d, err := decodeDump(a)
			if err != nil || call == "" {
				t.Fatalf("200 (%v); the broker saw %q", err, call)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(d.Header.Get(transport.HeaderAuth)), &got); err != nil {
				t.Fatalf("token %q: Mesh-Auth %q: %v", tok, d.Header.Get(transport.HeaderAuth), err)
			}
			want := jwt.MapClaims{}
			_, err = jwt.ParseWithClaims(tok, want, func(*jwt.Token) (any, error) { return secret, nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(time.Minute))
			if err != nil {
				t.Fatalf("token %q, which does not verify (%v), made a call with claims %q", tok, err, d.Header.Get(transport.HeaderAuth))
			}
			wb, _ := json.Marshal(want)
			gb, _ := json.Marshal(got)
			if !bytes.Equal(wb, gb) {
				t.Fatalf("token %q made a call with claims %s; want its own, %s", tok, gb, wb)
			}
		case 401, 403:
			if call != "" {
				t.Fatalf("token %q: %v, yet it reached %q", tok, a, call)
			}
			if err := cleanError(a); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("token %q: %v; want 200, 401 or 403", tok, a)
		}
	})
}
