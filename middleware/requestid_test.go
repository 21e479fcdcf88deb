package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// requestIDHandler answers with the request ID its context holds.
var requestIDHandler = middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, ok := reqctx.RequestID(r.Context())
	if !ok {
		http.Error(w, "no request ID in the context", 500)
		return
	}
	w.Write([]byte(id))
}))

func serveRequestID(inbound []string) (header, ctx string) {
	req := httptest.NewRequest("GET", "/", nil)
	for _, v := range inbound {
		req.Header.Add(transport.HeaderXRequestID, v)
	}
	w := httptest.NewRecorder()
	requestIDHandler.ServeHTTP(w, req)
	return w.Header().Get(transport.HeaderXRequestID), w.Body.String()
}

func TestRequestIDKeepsWellFormed(t *testing.T) {
	t.Parallel()
	for _, id := range []string{
		"a", "0190f0a2-7b6e-7c3e-9f55-0d1e2f3a4b5c", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"4bf92f3577b34da6a3ce929d0e0e4736", "Root=1-5759e988-bd862e3fe1be46a994272793"[5:],
		"abc+/=:._-", strings.Repeat("x", reqctx.MaxRequestIDLen),
	} {
		header, ctx := serveRequestID([]string{id})
		if header != id || ctx != id {
			t.Errorf("inbound %q: header %q, context %q; want both %q", id, header, ctx, id)
		}
	}
}

func TestRequestIDReplacesMalformed(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for _, id := range []string{
		"", " ", "a b", `a"b`, "a\\b", "a\nb", "a\rX-Evil: 1", "a;b", "a,b", "<script>", "é",
		"a\x00", strings.Repeat("x", reqctx.MaxRequestIDLen+1),
	} {
		header, ctx := serveRequestID([]string{id})
		if header == id || header != ctx || !reqctx.ValidRequestID(header) || len(header) != 22 {
			t.Errorf("inbound %q: header %q, context %q; want a new 22-character ID in both", id, header, ctx)
		}
		if seen[header] {
			t.Errorf("ID %q generated twice", header)
		}
		seen[header] = true
	}
	// With no inbound ID, every request gets its own.
	for range 1000 {
		header, _ := serveRequestID(nil)
		if seen[header] {
			t.Fatalf("ID %q generated twice", header)
		}
		seen[header] = true
	}
}

// TestRequestIDInErrorBody: the ID is in the response header before the
// handler runs, so error bodies carry it.
func TestRequestIDInErrorBody(t *testing.T) {
	t.Parallel()
	h := middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		transport.WriteHTTPError(w, transport.NewError(transport.CodeNotFound, "no such function"))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set(transport.HeaderXRequestID, "req-42")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, id := readError(t, resp); id != "req-42" || resp.Header.Get(transport.HeaderXRequestID) != "req-42" {
		t.Errorf("body request_id %q, header %q; want req-42", id, resp.Header.Get(transport.HeaderXRequestID))
	}
}
