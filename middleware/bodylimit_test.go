package middleware_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// readAllHandler reads the body and maps *http.MaxBytesError to 413, as
// the doc of BodyLimit asks handlers to do.
var readAllHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		transport.WriteHTTPError(w, transport.NewError(transport.CodeTooLarge, "request body too large"))
		return
	}
	if err != nil {
		transport.WriteHTTPError(w, transport.NewError(transport.CodeInvalidArgument, "unreadable body"))
		return
	}
	w.Header().Set("X-Handler-Ran", "1")
	w.Write(b)
})

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 10
	srv := httptest.NewServer(middleware.BodyLimit(limit)(readAllHandler))
	defer srv.Close()

	tests := []struct {
		name    string
		body    string
		chunked bool // send without a Content-Length
		status  int
		handler bool // the handler ran and wrote its answer
	}{
		{"empty", "", false, 200, true},
		{"under", "12345", false, 200, true},
		{"exactly the limit", "1234567890", false, 200, true},
		{"over, declared", "12345678901", false, 413, false},
		{"far over, declared", strings.Repeat("x", 1<<20), false, 413, false},
		{"under, chunked", "12345", true, 200, true},
		{"exactly the limit, chunked", "1234567890", true, 200, true},
		{"over, chunked", "12345678901", true, 413, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest("POST", srv.URL, body)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tt.status)
			}
			if ran := resp.Header.Get("X-Handler-Ran") == "1"; ran != tt.handler {
				t.Errorf("handler answered = %v; want %v", ran, tt.handler)
			}
			if tt.status == 413 {
				if e, _ := readError(t, resp); e.Code() != transport.CodeTooLarge {
					t.Errorf("code %s; want too_large", e.Code())
				}
				return
			}
			got, _ := io.ReadAll(resp.Body)
			if string(got) != tt.body {
				t.Errorf("echoed %d bytes; want %d", len(got), len(tt.body))
			}
		})
	}
}

// TestBodyLimitDeclaredTooLargeSkipsHandler: the handler does not run at
// all when the declared length is over the limit.
func TestBodyLimitDeclaredTooLargeSkipsHandler(t *testing.T) {
	t.Parallel()
	ran := false
	h := middleware.BodyLimit(4)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran = true }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader("12345")))
	if ran || w.Code != 413 {
		t.Errorf("handler ran = %v, status %d; want not run, 413", ran, w.Code)
	}
}

func TestBodyLimitPanicsOnBadLimit(t *testing.T) {
	for _, n := range []int64{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("BodyLimit(%d) did not panic", n)
				}
			}()
			middleware.BodyLimit(n)
		}()
	}
}

// TestBodyLimitInContext: BodyLimit tells the handlers after it the limit
// through the context, so that it is set in one place.
func TestBodyLimitInContext(t *testing.T) {
	t.Parallel()
	var got int64
	var ok bool
	h := middleware.BodyLimit(3 << 20)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok = reqctx.MaxBodyBytes(r.Context())
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/fn/a/b", strings.NewReader("{}")))
	if !ok || got != 3<<20 {
		t.Errorf("reqctx.MaxBodyBytes behind BodyLimit(3 MiB) = %d, %v; want %d, true", got, ok, 3<<20)
	}
}
