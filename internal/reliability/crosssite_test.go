package reliability_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// TestCrossSitePost: a page on another site cannot make a victim's
// browser run a function with the victim's cookie token (issue 16, item
// 2). The attacks are what a browser sends for a <form
// enctype=text/plain> or a fetch with credentials from
// https://evil.example: the cookie only, text/plain, and the browser's
// Origin and Sec-Fetch-Site headers. Requests without those headers (curl,
// server-to-server clients), pages of a trusted origin, and tokens in the
// Authorization header, which a page cannot make a browser send to
// another site, still work.
func TestCrossSitePost(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	dump := newCatchAll(t, b)
	g := newGateway(t, b.Conn(), gatewayConfig{
		Cookie:         "session",
		TrustedOrigins: []string{"https://app.example"},
		Policy:         []authz.Option{authz.RulesJSON([]byte(signedIn))},
	})
	tok := token(t, "victim")
	cookie := "session=" + tok
	const formBody = "{\"amount\":5000,\"x\":\"=\"}\r\n" // what <form enctype=text/plain> sends
	host := strings.TrimPrefix(g.url, "http://")

	tests := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"form from another site", []string{"Cookie", cookie, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403},
		{"another site, Origin only (older browser)", []string{"Cookie", cookie, "Origin", "https://evil.example"}, 403},
		{"another site, Sec-Fetch-Site only", []string{"Cookie", cookie, "Sec-Fetch-Site", "cross-site"}, 403},
		{"a sibling subdomain (same-site)", []string{"Cookie", cookie, "Origin", "https://blog." + host, "Sec-Fetch-Site", "same-site"}, 403},
		{"Origin null (sandboxed frame)", []string{"Cookie", cookie, "Origin", "null"}, 403},
		{"a trusted origin (the host's web app)", []string{"Cookie", cookie, "Origin", "https://app.example", "Sec-Fetch-Site", "cross-site"}, 200},
		{"same origin", []string{"Cookie", cookie, "Origin", "http://" + host, "Sec-Fetch-Site", "same-origin"}, 200},
		{"same origin, Origin only", []string{"Cookie", cookie, "Origin", "http://" + host}, 200},
		{"typed by the user (Sec-Fetch-Site none)", []string{"Cookie", cookie, "Sec-Fetch-Site", "none"}, 200},
		{"no browser headers (curl, a server)", []string{"Cookie", cookie}, 200},
		{"Bearer token from another site", []string{"Authorization", bearer(tok), "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 200},
	}
	for _, tt := range tests {
		before := dump.runs.Load()
		req, err := http.NewRequest(http.MethodPost, g.url+"/fn/payments/charge", strings.NewReader(formBody))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain")
		for i := 0; i+1 < len(tt.hdr); i += 2 {
			req.Header.Set(tt.hdr[i], tt.hdr[i+1])
		}
		a := g.send(req)
		if a.status != tt.status {
			t.Errorf("%s: %v; want %d", tt.name, a, tt.status)
			continue
		}
		ran := dump.runs.Load() - before
		if tt.status != 200 {
			if err := cleanError(a); err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			if ran != 0 {
				t.Errorf("%s: the function ran %d times; want never", tt.name, ran)
			}
			continue
		}
		d, err := decodeDump(a)
		if err != nil || ran != 1 || !strings.Contains(fmt.Sprint(d.Header["Mesh-Auth"]), `"sub":"victim"`) {
			t.Errorf("%s: ran %d times, headers %v (%v); want one call as the victim", tt.name, ran, d.Header, err)
		}
	}
}
