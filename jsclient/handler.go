// Package jsclient serves funcmesh.js, the JavaScript client of the
// gateway, and its TypeScript declarations, so that a page loads the
// client from the same origin as the gateway it calls:
//
//	mux.Handle("GET /js/", http.StripPrefix("/js", jsclient.Handler()))
//
// and in the page:
//
//	<script type="module">
//	  import { call } from "/js/funcmesh.js";
//	  const { greeting } = await call("greeter", "hello", { name: "Ada" });
//	</script>
//
// The module has no dependencies and needs no build step; Node.js (18 or
// later) imports it too. Its own comments document the API: call,
// createClient and MeshError.
package jsclient

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

var (
	//go:embed funcmesh.js
	moduleJS []byte
	//go:embed funcmesh.d.ts
	moduleDTS []byte
)

// Module returns the source of funcmesh.js.
func Module() []byte { return append([]byte(nil), moduleJS...) }

// Types returns the source of funcmesh.d.ts.
func Types() []byte { return append([]byte(nil), moduleDTS...) }

type file struct {
	body        []byte
	contentType string
	etag        string
}

func newFile(body []byte, contentType string) file {
	sum := sha256.Sum256(body)
	return file{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

var files = map[string]file{
	"funcmesh.js":   newFile(moduleJS, "text/javascript; charset=utf-8"),
	"funcmesh.d.ts": newFile(moduleDTS, "application/typescript; charset=utf-8"),
}

// Handler returns the handler that serves funcmesh.js and funcmesh.d.ts
// on GET and HEAD: a request whose path ends in one of those names gets
// that file, any other path 404 and any other method 405. Answers carry
// an ETag (a request with a matching If-None-Match gets 304) and
// Cache-Control: no-cache, so browsers revalidate and a new version is
// seen at once; and Access-Control-Allow-Origin: *, since the module is
// public and holds no secret, so pages on other origins may import it.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	f, ok := files[p[strings.LastIndexByte(p, '/')+1:]]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("ETag", f.etag) // ServeContent answers If-None-Match with it
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
