package jsclient_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/funcmesh/funcmesh/jsclient"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(jsclient.Handler())
	t.Cleanup(srv.Close)

	do := func(method, path string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}

	res := do("GET", "/funcmesh.js")
	etag := res.Header.Get("ETag")
	if res.StatusCode != 200 || etag == "" || res.Header.Get("Cache-Control") != "no-cache" ||
		res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("GET: %d %v", res.StatusCode, res.Header)
	}
	if res := do("GET", "/funcmesh.js", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Errorf("GET with If-None-Match: %d; want 304", res.StatusCode)
	}
	if res := do("HEAD", "/any/prefix/funcmesh.js"); res.StatusCode != 200 || res.ContentLength != int64(len(jsclient.Module())) {
		t.Errorf("HEAD: %d, length %d; want 200, %d", res.StatusCode, res.ContentLength, len(jsclient.Module()))
	}
	if res := do("POST", "/funcmesh.js"); res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %q; want 405 with Allow", res.StatusCode, res.Header.Get("Allow"))
	}
	for _, p := range []string{"/", "/funcmesh.test.mjs", "/handler.go", "/funcmesh.js/"} {
		if res := do("GET", p); res.StatusCode != 404 {
			t.Errorf("GET %s: %d; want 404", p, res.StatusCode)
		}
	}
	if !bytes.Contains(jsclient.Types(), []byte("export function createClient")) {
		t.Error("Types lacks createClient")
	}
}
