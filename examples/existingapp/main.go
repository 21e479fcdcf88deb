// Command existingapp is an ordinary net/http app (a home page and a health
// check) that adds a functions mesh in a few lines, each marked "mesh:".
// Its broker listens on a TCP port with per-service credentials, so that
// services in other processes, in Go or any other language, can join; at
// start it prints what they need: the NATS URL and each service's
// credentials.
//
//	go run ./examples/existingapp                      # HTTP on localhost:8080, NATS on 127.0.0.1:4222
//	go run ./examples/existingapp -addr 127.0.0.1:0 -nats 127.0.0.1:0
//
// Environment: FUNCMESH_SECRET (at least 16 bytes) derives the services'
// passwords, so they survive restarts; without it a random secret is made.
// JWT_SECRET (at least 32 bytes) verifies HS256 tokens; without it a random
// one is made and a demo token printed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

// rules is the app's authorization: greeter and nodegreeter are open, but
// their whoami needs a signed-in caller; every other service is denied.
// The Rego module below decides too: a call must pass both.
const rules = `{"services": {
  "greeter":     {"functions": {"whoami": {"rule": {"rule": "authenticated"}}, "default": {"rule": {"rule": "allow"}}}},
  "nodegreeter": {"functions": {"whoami": {"rule": {"rule": "authenticated"}}, "default": {"rule": {"rule": "allow"}}}},
  "default":     {"functions": {"default": {"rule": {"rule": "deny"}}}}
}}`

// nested is the rule for calls that functions make (input.caller is set):
// a function may call greeter, the Go service, and nothing else. Calls
// from HTTP (no caller) are left to the rules.
const nested = `package funcmesh.authz

default allow := false

allow if input.caller == null

allow if {
	input.caller.service != ""
	input.service == "greeter"
}

reason := "functions may call only greeter" if not allow
`

func main() {
	addr := flag.String("addr", "localhost:8080", "HTTP listen address (port 0 picks a free one)")
	natsAddr := flag.String("nats", "127.0.0.1:4222", "the broker's listen address for services in other processes (port 0 picks a free one)")
	services := flag.String("services", "greeter,nodegreeter", "comma-separated services to print credentials for")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, *addr, *natsAddr, strings.Split(*services, ","), logger); err != nil {
		fmt.Fprintln(os.Stderr, "existingapp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, natsAddr string, services []string, logger *slog.Logger) error {
	// The app as it was: its own routes.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", home)
	mux.HandleFunc("GET /healthz", healthz)

	// mesh: an embedded broker that services in other processes reach over
	// TCP, each with its own credentials.
	secret, err := secretFromEnv("FUNCMESH_SECRET", broker.MinSecretLen)
	if err != nil {
		return err
	}
	b, err := broker.Start(ctx, broker.WithListen(natsAddr),
		broker.WithServiceAuth(broker.ServiceAuth{Secret: secret})) // nil: a random secret
	if err != nil {
		return err
	}
	defer b.Close() // after the HTTP server has shut down (below)

	// mesh: authentication and the policy.
	jwtSecret, err := secretFromEnv("JWT_SECRET", 32)
	if err != nil {
		return err
	}
	if jwtSecret == nil {
		jwtSecret = randomSecret()
	}
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: jwtSecret}},
	})
	if err != nil {
		return err
	}
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(rules)), authz.Module("nested.rego", nested))
	if err != nil {
		return err
	}

	// mesh: the gateway and the discovery listing, behind an alice chain.
	// The gateway signs the claims it forwards (with a key derived from
	// FUNCMESH_SECRET), so that a function can pass them on; the router
	// takes the calls functions make, checks the signature and asks the
	// same policy.
	signer, err := transport.NewClaimsSigner(b.ClaimsKey())
	if err != nil {
		return err
	}
	gw, err := mesh.NewGateway(b.Conn(), mesh.WithClaimsSigner(signer))
	if err != nil {
		return err
	}
	router, err := mesh.NewRouter(b.Conn(), policy.AuthorizeCall, mesh.WithClaimsSigner(signer))
	if err != nil {
		return err
	}
	defer router.Stop(context.Background()) // after the HTTP server, before the broker
	disc, err := mesh.NewDiscovery(b.Conn())
	if err != nil {
		return err
	}
	chain := alice.New(middleware.RequestID, middleware.AccessLog(logger), middleware.Recover(logger),
		middleware.JWT(verifier), policy.Middleware)
	mux.Handle("POST /fn/{service}/{function}", chain.Then(gw))
	mux.Handle("GET /fn", disc)

	// The app's server, as it was.
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second, // slow-loris protection
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second, // longer than a call's deadline (10s)
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10, // 431 above this (the default is 1 MiB)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// mesh: tell the operator how services join.
	if err := printJoin(os.Stdout, b, httpURL(addr, ln.Addr()), services, jwtSecret, os.Getenv("JWT_SECRET") == ""); err != nil {
		return err
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil // the deferred b.Close drains the broker's connections, then stops it
}

func home(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, `<!doctype html><title>existingapp</title>
<h1>An existing app, now with a functions mesh</h1>
<ul>
<li><a href="/healthz">GET /healthz</a>: the app's health check</li>
<li><a href="/fn">GET /fn</a>: the services running on the mesh</li>
<li>POST /fn/{service}/{function}: call a function</li>
</ul>
`)
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// httpURL is the URL to print for the HTTP listener: the host given in
// -addr ("localhost" when it named none or every interface) with the port
// the listener really has.
func httpURL(addr string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return "http://" + net.JoinHostPort(host, port)
}
