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
//	call     calls {"service", "function", "params", "timeout_ms"} with its
//	         own context (a nested call, through the host's router) and
//	         returns the answer, or fails with the nested call's error
//
// With -extras it also serves
//
//	count    returns how many times each function has run in this process, {"echo": n, …}
//	error    returns a plain error whose text looks internal (it must never reach a caller)
//	panic    panics with a value that looks internal (likewise)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
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
	extras := flag.Bool("extras", false, "also serve count, error and panic")
	flag.Parse()
	if err := run(*url, *name, *maxConc, *extras); err != nil {
		fmt.Fprintln(os.Stderr, "echosvc:", err)
		os.Exit(1)
	}
}

func run(url, name string, maxConc int, extras bool) error {
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
		"call": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			var in struct {
				Service, Function string
				Params            json.RawMessage
				TimeoutMS         int `json:"timeout_ms"`
			}
			if err := c.Decode(&in); err != nil {
				return nil, err
			}
			if in.TimeoutMS > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(in.TimeoutMS)*time.Millisecond)
				defer cancel()
			}
			return c.Client().Invoke(ctx, in.Service, in.Function, in.Params)
		}),
	}
	var runs counts
	if extras {
		fns["error"] = mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return nil, errors.New(internalText)
		})
		fns["panic"] = mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			panic(internalText)
		})
		fns["count"] = mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return runs.json()
		})
	}
	for fn, h := range fns {
		if err := svc.Handle(fn, runs.counting(fn, h)); err != nil {
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

// internalText is what the error and panic functions fail with: text that
// looks like the internals a caller must never see.
const internalText = "nats: internal detail at /srv/secret/handler.go:42"

// counts records how many times each function has run.
type counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counts) counting(fn string, h mesh.Handler) mesh.Handler {
	return mesh.HandlerFunc(func(ctx context.Context, call *mesh.Call) ([]byte, error) {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[string]int{}
		}
		c.n[fn]++
		c.mu.Unlock()
		return h.ServeCall(ctx, call)
	})
}

func (c *counts) json() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Marshal(c.n)
}
