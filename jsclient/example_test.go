package jsclient_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/funcmesh/funcmesh/jsclient"
)

// The host serves funcmesh.js next to the gateway, so its pages import it
// from their own origin: import { call } from "/js/funcmesh.js".
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET /js/", http.StripPrefix("/js", jsclient.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, path := range []string{"/js/funcmesh.js", "/js/funcmesh.d.ts", "/js/other.js"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Println(path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Output:
	// /js/funcmesh.js 200 text/javascript; charset=utf-8
	// /js/funcmesh.d.ts 200 application/typescript; charset=utf-8
	// /js/other.js 404 text/plain; charset=utf-8
}
