// Command quickstart runs a whole functions mesh in one process: an
// embedded NATS broker, two services (greeter and accounts), and the HTTP
// gateway behind the full middleware chain with a JSON rule config and a
// Rego policy. It prints curl commands, with a freshly signed demo token,
// that show an allowed call, a denied one (403), an unauthenticated one
// (401) and one to a service that is not running (503).
//
//	go run ./examples/quickstart              # gateway on localhost:8080
//	go run ./examples/quickstart -addr 127.0.0.1:0
//
// Ctrl-C (SIGINT or SIGTERM) stops it gracefully: the HTTP server first,
// then the services, then the broker.
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
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "HTTP listen address (port 0 picks a free one)")
	corsOrigin := flag.String("cors-origin", "http://localhost:3000", "the origin whose pages may call the gateway (go run ./examples/web serves one there)")
	store := flag.String("store", filepath.Join(os.TempDir(), "funcmesh-quickstart"), "JetStream store directory (async calls, events)")
	flag.Parse()

	// Ctrl-C or SIGTERM cancels ctx, which starts the graceful shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, *addr, *store, []string{*corsOrigin}, logger); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, store string, corsOrigins []string, logger *slog.Logger) error {
	// 1. The broker: a nats-server inside this process; no port is opened.
	// Its own log goes to stderr too, warnings and errors only.
	natsLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// JetStream keeps async calls and events in store, across restarts.
	b, err := broker.Start(ctx, broker.WithLogger(natsLog), broker.WithJetStream(store))
	if err != nil {
		return err
	}
	defer b.Close() // runs last: after the HTTP server and the services

	// 1b. Durable work (async.go): async calls, and a welcome email on
	// every signup event.
	// A key of our own, not the broker's (random per process without
	// per-service credentials): stored tasks must verify after a restart.
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "demo", Secret: demoSecret})
	if err != nil {
		return err
	}
	du, err := startDurable(ctx, b, signer, logger)
	if err != nil {
		return err
	}
	defer du.stop(logger)

	// 2. The services, each on its own connection.
	var services []*mesh.Service
	defer func() { stopServices(services, logger) }()
	for _, s := range []struct {
		name  string
		start func(*nats.Conn, *slog.Logger) (*mesh.Service, error)
	}{{"greeter", startGreeter}, {"accounts", startAccounts}} {
		nc, err := b.NewConn(s.name)
		if err != nil {
			return err
		}
		svc, err := s.start(nc, logger)
		if err != nil {
			return err
		}
		services = append(services, svc)
	}

	// 3. The gateway behind the middleware chain (handler.go).
	handler, router, err := newHandler(ctx, b, du, signer, logger, corsOrigins)
	if err != nil {
		return err
	}
	defer router.Stop(context.Background()) // after the HTTP server, before the services

	// 4. The HTTP server. The timeouts matter on anything reachable from
	// outside: without ReadHeaderTimeout a client that sends its headers a
	// byte at a time (slow loris) holds a connection and a goroutine for
	// ever; ReadTimeout bounds the whole request, body included;
	// WriteTimeout bounds the response and must be longer than the longest
	// call (mesh.DefaultTimeout, 10s); IdleTimeout closes idle keep-alive
	// connections.
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10, // 431 above this (the default is 1 MiB)
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if err := printDemo(os.Stdout, baseURL(addr, ln.Addr())); err != nil {
		return err
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown, in order: stop taking HTTP requests and let the
	// ones in flight finish; then the services (the deferred calls above)
	// finish their calls; then the broker drains and stops.
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stopServices stops the services gracefully: each stops taking calls and
// finishes the ones it has, within 10 seconds.
func stopServices(services []*mesh.Service, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, svc := range services {
		if err := svc.Stop(ctx); err != nil {
			logger.Error("stopping service", "service", svc.Name(), "err", err)
		}
	}
}

// baseURL is the URL to print for the listener: the host given in -addr
// ("localhost" when it named none or every interface), with the port the
// listener really has, so -addr 127.0.0.1:0 prints the port picked.
func baseURL(addr string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return "http://" + net.JoinHostPort(host, port)
}
