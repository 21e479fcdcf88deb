// Command web serves the web example's page on an origin of its own, to
// show a frontend calling the gateway across origins (CORS with a token).
// Run the quickstart, then this, and open the printed address:
//
//	go run ./examples/quickstart                 # the gateway on localhost:8080
//	go run ./examples/web                        # the page on localhost:3000
//
// The quickstart lets pages from http://localhost:3000 call it (its
// -cors-origin flag). The same page is on the quickstart's own origin too,
// at its root: there the calls are same-origin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/funcmesh/funcmesh/examples/web/webpage"
)

func main() {
	addr := flag.String("addr", "localhost:3000", "HTTP listen address (port 0 picks a free one)")
	gateway := flag.String("gateway", "http://localhost:8080", "the gateway the page calls")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *gateway); err != nil {
		fmt.Fprintln(os.Stderr, "web:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, gateway string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           webpage.Handler(gateway),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	fmt.Printf("funcmesh web example: open http://%s in a browser\n", net.JoinHostPort(host, port))
	fmt.Printf("it calls the gateway at %s (start it with: go run ./examples/quickstart)\n", gateway)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
