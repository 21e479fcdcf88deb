package tasks_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/internal/cputime"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
)

var benchParams = []byte(`{"to":"someone@example.com","template":"welcome","n":1}`)

// rawStream makes a work-queue stream like FM_TASKS, for the baselines.
func rawStream(b *testing.B, js jetstream.JetStream) jetstream.Stream {
	s, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: tasks.DefaultDedupWindow,
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkEnqueue compares Tasks.Enqueue with a raw JetStream publish of
// the same params with the same acknowledgement level (a PubAck from the
// stream, with a Nats-Msg-Id), both from parallel callers.
func BenchmarkEnqueue(b *testing.B) {
	e := newEnv(b, tasks.Options{})
	js, _ := jetstream.New(e.b.Conn())
	raw := rawStream(b, js)
	// Like the tasks' stream, the raw one has a durable consumer waiting
	// (not pulling) for what is published.
	if _, err := raw.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: "rawwait", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "raw.mail.send.*"}); err != nil {
		b.Fatal(err)
	}
	ctx := withClaims(context.Background(), `{"sub":"u1","role":"user"}`)
	ctx = reqctx.WithRequestID(ctx, "bench")
	// No dispatcher takes the tasks: this measures the enqueue alone.
	_ = e.d.Stop(context.Background())

	b.Run("funcmesh", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cputime.Process()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.q.Enqueue(ctx, tasks.Call{Service: "mail", Function: "send", Params: benchParams}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportCPU(b, cpu)
	})
	var n atomic.Int64
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cputime.Process()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := strconv.FormatInt(n.Add(1), 10)
				if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "raw.mail.send." + id, Data: benchParams}, jetstream.WithMsgID(id)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportCPU(b, cpu)
	})
}

// BenchmarkEndToEnd compares tasks per second to a trivial function
// (enqueue, dispatch, call, status, acknowledgement) with raw JetStream
// publish and consume (with acknowledgement) of the same payloads.
func BenchmarkEndToEnd(b *testing.B) {
	e := newEnv(b, tasks.Options{Default: tasks.Retry{Concurrency: 64}})
	var ran atomic.Int64
	service(b, e.b, "mail", map[string]mesh.Handler{
		"send": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			ran.Add(1)
			return []byte(`{"ok":true}`), nil
		}),
	})
	js, _ := jetstream.New(e.b.Conn())
	raw := rawStream(b, js)
	ctx := context.Background()
	// The enqueuer has its own connection, as an HTTP handler's would
	// beside the dispatcher's.
	enc, err := e.b.NewConn("enqueuer")
	if err != nil {
		b.Fatal(err)
	}
	eq, err := tasks.New(ctx, enc, e.opts)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("funcmesh", func(b *testing.B) {
		b.ReportAllocs()
		ran.Store(0)
		writes := lastSeq(b, js, "KV_"+tasks.StatusBucketName)
		cpu := cputime.Process()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := eq.Enqueue(ctx, tasks.Call{Service: "mail", Function: "send", Params: benchParams}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		for ran.Load() < int64(b.N) {
			time.Sleep(time.Millisecond) // poll interval while the benchmark's tasks finish
		}
		drained(b, js, tasks.StreamName)
		reportCPU(b, cpu)
		b.ReportMetric(float64(lastSeq(b, js, "KV_"+tasks.StatusBucketName)-writes)/float64(b.N), "status-writes/op")
	})
	cons, err := raw.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "raw.>"})
	if err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		got.Add(1)
	}, jetstream.PullMaxMessages(64))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	var n atomic.Int64
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		got.Store(0)
		cpu := cputime.Process()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := strconv.FormatInt(n.Add(1), 10)
				if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "raw.mail.send." + id, Data: benchParams}, jetstream.WithMsgID(id)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		for got.Load() < int64(b.N) {
			time.Sleep(time.Millisecond) // poll interval while the benchmark's tasks finish
		}
		drained(b, js, "RAW")
		reportCPU(b, cpu)
	})
}

// reportCPU reports the CPU time the whole process (callers, broker,
// dispatcher, service) spent per operation since start, as cpu-ns/op. On
// a machine shared with other work it is steadier than ns/op, which counts
// the time other processes held the CPUs.
func reportCPU(b *testing.B, start time.Duration) {
	if used := cputime.Process() - start; used > 0 && start > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// lastSeq is the last sequence of the stream name.
func lastSeq(b *testing.B, js jetstream.JetStream, name string) uint64 {
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return info.State.LastSeq
}

// drained waits until the work-queue stream name is empty: every message
// acknowledged, and so removed.
func drained(b *testing.B, js jetstream.JetStream, name string) {
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	for {
		info, err := s.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the last acknowledgements land
	}
}
