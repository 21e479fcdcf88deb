package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
)

func corsHandler(t *testing.T, opts middleware.CORSOptions) http.Handler {
	t.Helper()
	mw, err := middleware.CORS(opts)
	if err != nil {
		t.Fatalf("CORS: %v", err)
	}
	return mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Handler-Ran", "1")
	}))
}

func preflight(h http.Handler, origin, method, headers string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("OPTIONS", "/fn/payments/charge", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	h := corsHandler(t, middleware.CORSOptions{AllowedOrigins: []string{"https://app.example.com", "https://*.example.org"}})
	w := preflight(h, "https://app.example.com", "POST", "authorization,content-type,x-request-id")
	if w.Code != http.StatusNoContent || w.Header().Get("X-Handler-Ran") != "" {
		t.Fatalf("status %d, handler ran %q; want 204 from CORS itself", w.Code, w.Header().Get("X-Handler-Ran"))
	}
	hdr := w.Header()
	if got := hdr.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("Allow-Origin %q", got)
	}
	if got := hdr.Get("Access-Control-Allow-Methods"); got != "POST" {
		t.Errorf("Allow-Methods %q; want POST", got)
	}
	if got := strings.Split(hdr.Get("Access-Control-Allow-Headers"), ","); !hasString(got, "authorization") || !hasString(got, "x-request-id") {
		t.Errorf("Allow-Headers %q", got)
	}
	if got := hdr.Get("Access-Control-Max-Age"); got != "600" {
		t.Errorf("Max-Age %q; want 600", got)
	}
	if got := hdr.Get("Access-Control-Allow-Credentials"); got != "" {
		t.Errorf("Allow-Credentials %q without AllowCredentials", got)
	}

	if w := preflight(h, "https://api.example.org", "POST", ""); w.Header().Get("Access-Control-Allow-Origin") != "https://api.example.org" {
		t.Errorf("wildcard origin not allowed: %v", w.Header())
	}
	for _, origin := range []string{"https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.net", "null"} {
		if w := preflight(h, origin, "POST", ""); w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("origin %s allowed", origin)
		}
	}
	if w := preflight(h, "https://app.example.com", "DELETE", ""); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("DELETE allowed: %v", w.Header())
	}
	if w := preflight(h, "https://app.example.com", "POST", "x-secret"); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("header x-secret allowed: %v", w.Header())
	}
}

func TestCORSActualRequest(t *testing.T) {
	t.Parallel()
	h := corsHandler(t, middleware.CORSOptions{AllowedOrigins: []string{"https://app.example.com"}, AllowCredentials: true})
	for _, tt := range []struct {
		origin  string
		allowed bool
	}{{"https://app.example.com", true}, {"https://evil.example.com", false}, {"", false}} {
		req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Header().Get("X-Handler-Ran") != "1" {
			t.Errorf("origin %q: handler did not run", tt.origin)
		}
		hdr := w.Header()
		want := ""
		if tt.allowed {
			want = tt.origin
		}
		if got := hdr.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %q: Allow-Origin %q; want %q", tt.origin, got, want)
		}
		if tt.allowed {
			if hdr.Get("Access-Control-Allow-Credentials") != "true" || hdr.Get("Access-Control-Expose-Headers") != "X-Request-Id, Location, Preference-Applied, Retry-After" {
				t.Errorf("origin %q: headers %v", tt.origin, hdr)
			}
		}
		if !strings.Contains(strings.Join(hdr.Values("Vary"), ","), "Origin") {
			t.Errorf("origin %q: no Vary: Origin", tt.origin)
		}
	}
}

func TestCORSOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		maxAge time.Duration
		want   string
	}{{90 * time.Second, "90"}, {-1, "0"}, {time.Millisecond, "1"}} {
		h := corsHandler(t, middleware.CORSOptions{AllowedOrigins: []string{"*"}, MaxAge: tt.maxAge, AllowedMethods: []string{"PUT"}})
		w := preflight(h, "https://any.example", "PUT", "")
		if got := w.Header().Get("Access-Control-Max-Age"); got != tt.want {
			t.Errorf("MaxAge %v: header %q; want %q", tt.maxAge, got, tt.want)
		}
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("origin * : Allow-Origin %q", got)
		}
	}
}

func TestCORSErrors(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]middleware.CORSOptions{
		"no origins":         {},
		"* with credentials": {AllowedOrigins: []string{"*"}, AllowCredentials: true},
		"path":               {AllowedOrigins: []string{"https://app.example.com/"}},
		"no scheme":          {AllowedOrigins: []string{"app.example.com"}},
		"query":              {AllowedOrigins: []string{"https://app.example.com?x"}},
		"two stars":          {AllowedOrigins: []string{"https://*.*.example.com"}},
		"user":               {AllowedOrigins: []string{"https://u@app.example.com"}},
	} {
		if _, err := middleware.CORS(opts); err == nil {
			t.Errorf("%s: CORS succeeded; want an error", name)
		}
	}
}
