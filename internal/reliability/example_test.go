package reliability_test

import (
	"fmt"
	"net/http"
	"time"
)

// Example_serverTimeouts is the http.Server a host should put in front of
// the gateway (the values .readme/reliability.md explains), with calls
// that time out after callTimeout (mesh.WithTimeout, 10s by default).
func Example_serverTimeouts() {
	const callTimeout = 10 * time.Second
	mux := http.NewServeMux()
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,              // slow headers (slow loris): cut
		ReadTimeout:       30 * time.Second,             // headers and body: the largest body at the slowest client you serve
		WriteTimeout:      callTimeout + 10*time.Second, // longer than any call, or answers are cut
		IdleTimeout:       2 * time.Minute,              // idle keep-alive connections
		MaxHeaderBytes:    64 << 10,                     // 431 above this
	}
	fmt.Println(srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	// Output: 5s 30s 20s 2m0s 65536
}
