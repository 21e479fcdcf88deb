// Command service is a funcmesh service in a process of its own: it
// connects to a NATS broker (the embedded one of examples/existingapp, or
// any NATS server), registers its functions, and stops gracefully on
// SIGINT or SIGTERM.
//
//	hello   {"name": "Ada"} → {"greeting": "Hello, Ada!", "from": "go"}
//	whoami  the caller's claims, the request ID and the calling function
//	relay   {"service", "function", "params"}: calls that function (a
//	        nested call, which the host's policy decides) and returns
//	        {"result": ...}
//
// Every setting is a flag or an environment variable (the flag wins):
//
//	-nats      NATS_URL            broker URL(s), comma-separated (nats://127.0.0.1:4222)
//	-name      MESH_SERVICE        the service's name (greeter)
//	-user      NATS_USER           user and password, e.g. from existingapp's
//	-password  NATS_PASSWORD       per-service credentials
//	-inbox     NATS_INBOX_PREFIX   reply inbox prefix those credentials require
//	-creds     NATS_CREDS          or a NATS credentials file (JWT + nkey seed)
//
// Run it with the credentials examples/existingapp prints:
//
//	export NATS_URL=nats://127.0.0.1:4222 MESH_SERVICE=greeter NATS_USER=greeter NATS_PASSWORD=... NATS_INBOX_PREFIX=_INBOX_greeter
//	go run ./examples/service
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

func main() {
	url := flag.String("nats", env("NATS_URL", nats.DefaultURL), "broker URL(s), comma-separated")
	name := flag.String("name", env("MESH_SERVICE", "greeter"), "the service's name")
	user := flag.String("user", os.Getenv("NATS_USER"), "NATS user")
	password := flag.String("password", os.Getenv("NATS_PASSWORD"), "NATS password")
	inbox := flag.String("inbox", os.Getenv("NATS_INBOX_PREFIX"), "NATS reply inbox prefix")
	creds := flag.String("creds", os.Getenv("NATS_CREDS"), "NATS credentials file")
	flag.Parse()

	opts := []nats.Option{
		nats.Name(*name),
		nats.MaxReconnects(-1), // keep trying while the broker restarts
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			fmt.Fprintln(os.Stderr, "service: disconnected:", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { fmt.Fprintln(os.Stderr, "service: reconnected to", nc.ConnectedUrlRedacted()) }),
	}
	if *user != "" {
		opts = append(opts, nats.UserInfo(*user, *password))
	}
	if *inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(*inbox))
	}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	if err := run(*url, *name, opts); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

func run(url, name string, opts []nats.Option) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()

	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close() // after Drain, a no-op; on an early return, closes at once

	svc, err := mesh.NewService(nc, name, mesh.WithVersion("1.0.0"), mesh.WithDescription("funcmesh example service in Go"))
	if err != nil {
		return err
	}
	if err := svc.Handle("hello", mesh.Func(hello)); err != nil {
		return err
	}
	if err := svc.HandleFunc("whoami", whoami); err != nil {
		return err
	}
	if err := svc.HandleFunc("relay", relay); err != nil {
		return err
	}
	// Handle returns once the broker delivers calls to the function.
	fmt.Printf("ready: service %s (instance %s) on %s\n", name, svc.ID(), nc.ConnectedUrlRedacted())

	<-ctx.Done()
	fmt.Println("stopping: finishing the calls in flight")
	// Stop takes no new calls (they go to other instances) and waits for
	// the ones running, at most 10 seconds; then Drain delivers what is
	// still pending and flushes the last replies before closing.
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := svc.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := drain(nc, 5*time.Second); err != nil {
		return err
	}
	fmt.Println("stopped")
	return nil
}

type helloIn struct {
	Name string `json:"name"`
}

type helloOut struct {
	Greeting string `json:"greeting"`
	From     string `json:"from"`
}

func hello(_ context.Context, in helloIn) (helloOut, error) {
	if len(in.Name) > 100 {
		return helloOut{}, transport.NewError(transport.CodeInvalidArgument, "name: at most 100 bytes")
	}
	if in.Name == "" {
		in.Name = "world"
	}
	return helloOut{Greeting: "Hello, " + in.Name + "!", From: "go"}, nil
}

func whoami(_ context.Context, c *mesh.Call) ([]byte, error) {
	claims, _ := c.Claims()
	var caller *string
	if cl, ok := c.Caller(); ok {
		s := cl.String()
		caller = &s
	}
	return json.Marshal(map[string]any{
		"claims":    claims, // null for an anonymous caller
		"requestId": c.RequestID(),
		"caller":    caller, // null unless a function called
	})
}

// relay calls another function with its own ctx, so the caller's claims,
// the request ID and the deadline travel on, and the host's router asks
// the policy whether this function may make the call.
func relay(ctx context.Context, c *mesh.Call) ([]byte, error) {
	var in struct {
		Service  string          `json:"service"`
		Function string          `json:"function"`
		Params   json.RawMessage `json:"params"`
	}
	if err := c.Decode(&in); err != nil {
		return nil, err
	}
	out, err := c.Client().Invoke(ctx, in.Service, in.Function, in.Params)
	if err != nil {
		return nil, err // the policy's 403, the callee's own error, 503, 504...
	}
	return json.Marshal(map[string]json.RawMessage{"result": out})
}

// drain drains nc and waits, at most timeout, until it is closed.
func drain(nc *nats.Conn, timeout time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("drain: not done after %s", timeout)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
