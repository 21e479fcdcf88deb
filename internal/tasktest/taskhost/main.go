// Command taskhost is a funcmesh host for the durable-task fault tests: an
// embedded broker with JetStream (or a connection to one), package tasks'
// streams and a dispatcher. It prints "ready" once the dispatcher runs and
// stops on SIGTERM; tests kill it with SIGKILL.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

func main() {
	var (
		store       = flag.String("store", "", "JetStream store directory of the embedded broker")
		listen      = flag.String("listen", "127.0.0.1:0", "client listen address of the embedded broker")
		name        = flag.String("name", "", "server name")
		clusterAddr = flag.String("cluster", "", "cluster listen address (empty: no cluster)")
		routes      = flag.String("routes", "", "comma-separated route URLs")
		connect     = flag.String("connect", "", "connect to these NATS URLs instead of embedding a broker")
		replicas    = flag.Int("replicas", 1, "stream replicas")
		ackWait     = flag.Duration("ackwait", 2*time.Second, "tasks.Options.AckWait")
		concurrency = flag.Int("concurrency", 4, "attempts at once per function")
		backoff     = flag.Duration("backoff", 200*time.Millisecond, "first retry pause")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var b *broker.Broker
	var err error
	if *connect != "" {
		b, err = broker.Connect(ctx, strings.Split(*connect, ","))
	} else {
		opts := []broker.StartOption{broker.WithJetStream(*store), broker.WithListen(*listen)}
		if *name != "" {
			opts = append(opts, broker.WithServerName(*name))
		}
		if *clusterAddr != "" {
			var rs []string
			if *routes != "" {
				rs = strings.Split(*routes, ",")
			}
			opts = append(opts, broker.WithCluster(broker.Cluster{Listen: *clusterAddr, Routes: rs}))
		}
		b, err = broker.Start(ctx, opts...)
	}
	if err != nil {
		fail(err)
	}
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "test", Secret: bytes.Repeat([]byte("t"), 32)})
	if err != nil {
		fail(err)
	}
	// The dispatcher's warnings go to stderr, which the tests show.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", *name)
	var q *tasks.Tasks
	for {
		// On a cluster that is still forming, JetStream is not ready yet.
		tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
		q, err = tasks.New(tctx, b.Conn(), tasks.Options{Signer: signer, Replicas: *replicas, AckWait: *ackWait, Logger: logger,
			Default: tasks.Retry{Concurrency: *concurrency, Backoff: *backoff, MaxBackoff: 2 * *backoff, MaxAttempts: 10}})
		tcancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		fmt.Fprintln(os.Stderr, "taskhost: waiting for JetStream:", err)
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		fail(err)
	}
	client, err := mesh.NewClient(b.Conn())
	if err != nil {
		fail(err)
	}
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		fail(err)
	}
	fmt.Println("ready", b.ClientURL(), b.ClusterURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = d.Stop(sctx)
	_ = b.Shutdown(sctx)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "taskhost:", err)
	os.Exit(1)
}
