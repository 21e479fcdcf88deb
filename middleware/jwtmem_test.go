package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/golang-jwt/jwt/v5"
)

// TestJWTKeepsNoRequestHeaders: verifying a token keeps nothing of the
// request alive (issue 16, item 3). Each request carries a distinct valid
// token in a 256 KiB Authorization or Cookie header; once the requests
// are gone, the heap must not hold their headers (64 of them: 16 MiB).
// Not parallel, so that the heap is this test's alone.
func TestJWTKeepsNoRequestHeaders(t *testing.T) {
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Cookie: "session"})
	ok := 0
	h := middleware.JWT(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ok++ }))
	pad := strings.Repeat(" ", 256<<10)
	filler := "other=" + strings.Repeat("x", 256<<10)

	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	before := m.HeapAlloc
	const n = 64
	for i := range n {
		tok := sign(t, jwt.SigningMethodHS256, secret, "", claims("n", i))
		r := httptest.NewRequest("POST", "/fn/a/b", nil)
		if i%2 == 0 {
			r.Header.Set("Authorization", "Bearer"+pad+tok) // a fresh string each time
		} else {
			r.Header.Set("Cookie", filler+"; session="+tok)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	runtime.GC()
	runtime.ReadMemStats(&m)
	if ok != n {
		t.Fatalf("%d of %d requests got through; want all", ok, n)
	}
	// 64 requests of 256 KiB: 16 MiB if the headers were kept.
	if grew := int64(m.HeapAlloc) - int64(before); grew > 4<<20 {
		t.Errorf("the heap grew by %d KiB after %d requests with 256 KiB headers; want under 4 MiB: something keeps the headers", grew>>10, n)
	}
	runtime.KeepAlive(v)
}
