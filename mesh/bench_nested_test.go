package mesh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/internal/cputime"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// nestedRules is benchRules for nested calls: signed-in users with role
// "user" may have outer call inner.echo.
const nestedRules = `{"services": {
	"inner": {"functions": {
		"echo": {"rule": {"rule": "and", "clauses": [
			{"rule": "authenticated"},
			{"rule": "match", "eval": "==", "type": "string", "f1": "args.auth.role", "f2": "user"}]}},
		"default": {"rule": {"rule": "deny"}}}},
	"default": {"functions": {"default": {"rule": {"rule": "allow"}}}}}}`

// BenchmarkNestedCall measures a nested call, made from inside a function
// (outer.run) to inner.echo, in one run:
//
//	direct      over NATS straight to fn.inner.echo with the claims and
//	            request ID, as nested calls went before they passed the
//	            policy (a Client used with a context that is not the
//	            function's)
//	authorized  through the call route and a Router: the claims' signature
//	            checked, the rule config decided, the call forwarded and
//	            the answer relayed
//	authorized-local
//	            the same checks by the Router in the process
//	            (WithLocalRouter), then straight to fn.inner.echo
//
// The callers run inside one call of outer.run, callParallelism×GOMAXPROCS
// of them at once, so that only the nested calls are timed. The broker,
// the router and both services run in the process, each on a connection
// of its own.
//
//	go test -run '^$' -bench BenchmarkNestedCall -count 6 ./mesh/
func BenchmarkNestedCall(b *testing.B) {
	ctx := context.Background()
	brk, err := broker.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = brk.Close() })
	signer, err := transport.NewClaimsSigner(brk.ClaimsKey())
	if err != nil {
		b.Fatal(err)
	}
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(nestedRules)))
	if err != nil {
		b.Fatal(err)
	}
	routerConn, err := brk.NewConn("router")
	if err != nil {
		b.Fatal(err)
	}
	router, err := mesh.NewRouter(routerConn, policy.AuthorizeCall, mesh.WithClaimsSigner(signer))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = router.Stop(context.Background()) })
	innerConn, err := brk.NewConn("inner")
	if err != nil {
		b.Fatal(err)
	}
	inner, err := mesh.NewService(innerConn, "inner", mesh.WithMaxConcurrency(10000))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = inner.Stop(context.Background()) })
	if err := inner.Handle("echo", echo); err != nil {
		b.Fatal(err)
	}
	// run hands the benchmark body, b's sub-benchmark, the context of a
	// call to outer.run, through which it makes its nested calls.
	var (
		mu   sync.Mutex
		body func(ctx context.Context, c *mesh.Call)
	)
	for _, name := range []string{"outer", "outerlocal"} {
		conn, err := brk.NewConn(name)
		if err != nil {
			b.Fatal(err)
		}
		var opts []mesh.ServiceOption
		if name == "outerlocal" {
			opts = append(opts, mesh.WithLocalRouter(router))
		}
		outer, err := mesh.NewService(conn, name, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = outer.Stop(context.Background()) })
		if err := outer.HandleFunc("run", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			mu.Lock()
			f := body
			mu.Unlock()
			f(ctx, c)
			return nil, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	gw, err := mesh.NewClient(brk.Conn(), mesh.WithClaimsSigner(signer))
	if err != nil {
		b.Fatal(err)
	}
	claims := []byte(`{"iss":"https://idp.example.com","sub":"u1","aud":"funcmesh","role":"user","email":"u1@example.com"}`)
	decoded, _ := transport.DecodeClaims(string(claims))
	run := func(b *testing.B, outer string, f func(ctx context.Context, c *mesh.Call)) {
		mu.Lock()
		body = f
		mu.Unlock()
		callCtx, cancel := context.WithTimeout(reqctx.WithClaims(reqctx.WithRequestID(ctx, "8Pq3bHdHdFOG1xNHN8fYzo"), decoded, claims), time.Hour)
		defer cancel()
		if _, err := gw.Invoke(callCtx, outer, "run", nil); err != nil {
			b.Fatal(err)
		}
	}
	parallel := func(b *testing.B, call func(pb *testing.PB) error) {
		b.SetParallelism(callParallelism)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := cputime.Process()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(pb); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportCPU(b, cpu)
	}

	b.Run("direct", func(b *testing.B) {
		run(b, "outer", func(fctx context.Context, c *mesh.Call) {
			// The same values the call carries, in a context that is not
			// the function's: the client sends them straight to
			// fn.inner.echo, with the host connection's rights.
			claims, _ := c.ClaimsJSON()
			deadline := c.Deadline()
			dctx, cancel := context.WithDeadline(reqctx.WithClaims(reqctx.WithRequestID(context.Background(), c.RequestID()), decoded, claims), deadline)
			defer cancel()
			direct := c.Client()
			parallel(b, func(*testing.PB) error {
				_, err := direct.Invoke(dctx, "inner", "echo", benchParams)
				return err
			})
		})
	})
	for _, p := range []struct{ name, outer string }{{"authorized", "outer"}, {"authorized-local", "outerlocal"}} {
		b.Run(p.name, func(b *testing.B) {
			run(b, p.outer, func(fctx context.Context, c *mesh.Call) {
				client := c.Client()
				parallel(b, func(*testing.PB) error {
					_, err := client.Invoke(fctx, "inner", "echo", benchParams)
					return err
				})
			})
		})
	}
}
