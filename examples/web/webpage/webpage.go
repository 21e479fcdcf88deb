// Package webpage is the web example's page: a frontend that signs in with
// the quickstart's demo token and calls its functions through funcmesh.js,
// showing each result, and each error's code and request ID. The
// quickstart serves it on the gateway's own origin; the web example
// (examples/web) serves it on another, to show the cross-origin case.
package webpage

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"time"

	"github.com/funcmesh/funcmesh/jsclient"
)

//go:embed index.html app.js style.css
var files embed.FS

var index = template.Must(template.ParseFS(files, "index.html"))

// Handler serves the page at "/", its script and style, and funcmesh.js.
// gateway is the URL of the gateway the page calls by default ("" for the
// page's own origin); the person may type another into the page.
func Handler(gateway string) http.Handler {
	var page bytes.Buffer
	if err := index.Execute(&page, struct{ Gateway string }{gateway}); err != nil {
		panic("webpage: " + err.Error())
	}
	static := http.FileServerFS(files)
	mux := http.NewServeMux()
	mux.Handle("GET /funcmesh.js", jsclient.Handler())
	mux.Handle("GET /app.js", static)
	mux.Handle("GET /style.css", static)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Scripts and styles from this origin only; calls to any gateway
		// (the person may type one in); no framing.
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src *; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(page.Bytes()))
	})
	return mux
}
