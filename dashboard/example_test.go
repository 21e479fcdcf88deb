package dashboard_test

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/dashboard"
)

// adminOnly stands for the host's own authentication and authorization:
// the dashboard must never be reachable without it.
func adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "admin" || subtle.ConstantTimeCompare([]byte(pass), []byte("s3cret")) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func ExampleNew() {
	ctx := context.Background()
	b, err := broker.Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	dash, err := dashboard.New(b.Conn(), dashboard.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /admin/mesh/", http.StripPrefix("/admin/mesh", adminOnly(dash)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, pass := range []string{"", "s3cret"} {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/mesh/", nil)
		if pass != "" {
			req.SetBasicAuth("admin", pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		res.Body.Close()
		fmt.Println(res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Output:
	// 401 text/plain; charset=utf-8
	// 200 text/html; charset=utf-8
}
