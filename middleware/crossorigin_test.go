package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/golang-jwt/jwt/v5"
)

// TestJWTCookieCrossOrigin: a token from the cookie is refused in a
// cross-origin browser request, unless the origin is trusted; a token in
// the Authorization header, which a page on another site cannot make a
// browser send, is not.
func TestJWTCookieCrossOrigin(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{
		Keys:           []middleware.JWTKey{{Key: secret}},
		Cookie:         "session",
		TrustedOrigins: []string{"https://app.example.com"},
	})
	h := middleware.JWT(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tok := sign(t, jwt.SigningMethodHS256, secret, "", claims())
	bad := sign(t, jwt.SigningMethodHS256, secret2, "", claims())

	tests := []struct {
		name   string
		method string
		hdr    map[string]string
		cookie string
		status int
	}{
		{"cross-site POST", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, tok, 403},
		{"cross-site POST, bad token", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, bad, 403},
		{"same-site POST", "POST", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.com"}, tok, 403},
		{"Origin of another host", "POST", map[string]string{"Origin": "https://evil.example"}, tok, 403},
		{"cross-site PUT", "PUT", map[string]string{"Sec-Fetch-Site": "cross-site"}, tok, 403},
		{"trusted origin", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}, tok, 200},
		{"same-origin", "POST", map[string]string{"Sec-Fetch-Site": "same-origin"}, tok, 200},
		{"Origin of this host", "POST", map[string]string{"Origin": "http://example.com"}, tok, 200},
		{"no browser headers", "POST", nil, tok, 200},
		{"no browser headers, bad token", "POST", nil, bad, 401},
		{"cross-site GET (safe)", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, tok, 200},
		{"cross-site, no token", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 200},
		{"cross-site, Bearer header", "POST", map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer " + tok}, bad, 200},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, "http://example.com/fn/payments/charge", nil)
		for k, val := range tt.hdr {
			req.Header.Set(k, val)
		}
		if tt.cookie != "" {
			req.AddCookie(&http.Cookie{Name: "session", Value: tt.cookie})
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tt.status {
			t.Errorf("%s: status %d; want %d (%s)", tt.name, w.Code, tt.status, w.Body)
			continue
		}
		if tt.status == 403 {
			e, _, err := transport.ParseHTTPError(w.Code, w.Body.Bytes())
			if err != nil || e.Code() != transport.CodePermissionDenied {
				t.Errorf("%s: body %q; want a permission_denied error", tt.name, w.Body)
			}
		}
	}
}
