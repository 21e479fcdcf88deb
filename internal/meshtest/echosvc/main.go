// Command echosvc is a small funcmesh service for tests that need one in a
// separate process (to SIGTERM or SIGKILL it, say). It connects to the
// NATS URL given by -url, serves the functions below as service -name,
// prints "ready <instance id>" once it is reachable, and stops gracefully
// on SIGTERM or SIGINT, printing "stopped".
//
//	echo     returns its params
//	whoami   returns {"pid", "id", "request_id", "claims", "caller"}
//	sleep    waits {"ms": n} milliseconds (or until the deadline), returns {"slept": n}
//	fail     returns an error with the status in {"status": n}
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
	url := flag.String("url", nats.DefaultURL, "NATS URL")
	name := flag.String("name", "echo", "service name")
	maxConc := flag.Int("max-concurrency", mesh.DefaultMaxConcurrency, "calls run at once")
	flag.Parse()
	if err := run(*url, *name, *maxConc); err != nil {
		fmt.Fprintln(os.Stderr, "echosvc:", err)
		os.Exit(1)
	}
}

func run(url, name string, maxConc int) error {
	nc, err := nats.Connect(url, nats.Name("echosvc"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	svc, err := mesh.NewService(nc, name, mesh.WithVersion("1.0.0"), mesh.WithMaxConcurrency(maxConc))
	if err != nil {
		return err
	}
	fns := map[string]mesh.Handler{
		"echo": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			return c.Params(), nil
		}),
		"whoami": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			claims, _ := c.Claims()
			caller, _ := c.Caller()
			return json.Marshal(map[string]any{
				"pid": os.Getpid(), "id": svc.ID(), "request_id": c.RequestID(),
				"claims": claims, "caller": caller.String(),
			})
		}),
		"sleep": mesh.Func(func(ctx context.Context, in struct{ MS int }) (map[string]int, error) {
			select {
			case <-time.After(time.Duration(in.MS) * time.Millisecond):
				return map[string]int{"slept": in.MS}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
		"fail": mesh.Func(func(_ context.Context, in struct{ Status int }) (struct{}, error) {
			return struct{}{}, transport.ErrorWithStatus(in.Status, "failed as asked")
		}),
	}
	for fn, h := range fns {
		if err := svc.Handle(fn, h); err != nil {
			return err
		}
	}
	fmt.Println("ready", svc.ID())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := svc.Stop(ctx); err != nil {
		return err
	}
	if err := nc.Drain(); err != nil {
		return err
	}
	fmt.Println("stopped")
	return nil
}
