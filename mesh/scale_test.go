package mesh_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/mesh"
)

// TestScale puts 10,000 calls in flight at once on one gateway's client
// and one service instance, each to a function that sleeps 50 ms, and
// checks that every call succeeds; it logs the wall time and the memory
// each call in flight costs. The figures are in docs/performance.md;
// only correctness is asserted.
//
// The calls go through the gateway's Client, not HTTP: 10,000 HTTP
// connections with both ends in this process would take 20,000 file
// descriptors, the limit of the machines this runs on, and HTTP/1.1 holds
// one call per connection. The "http" part sends 2,000 calls through the
// gateway over a client transport bounded to 1,000 connections instead.
//
// Skipped with -short, and under the race detector, which allows 8,128
// goroutines: each call in flight is two (the caller's and the function's).
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if raceEnabled {
		t.Skip("the race detector allows 8128 goroutines; this test runs 20,000")
	}
	t.Run("client", func(t *testing.T) { scaleClient(t, 10_000) })
	t.Run("http", func(t *testing.T) { scaleHTTP(t, 2_000, 1_000) })
}

// scaleClient makes n calls at once. The function waits until all n are
// in it (so they are provably in flight together, whatever the machine's
// speed) and memory has been measured, then sleeps 50 ms.
func scaleClient(t *testing.T, n int) {
	e := newEnv(t, nil)
	var arrived atomic.Int64
	allIn, release := make(chan struct{}), make(chan struct{})
	e.service(t, "scale", map[string]mesh.Handler{
		"sleep": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			if arrived.Add(1) == int64(n) {
				close(allIn)
			}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			time.Sleep(50 * time.Millisecond)
			return c.Params(), nil
		}),
	}, mesh.WithMaxConcurrency(n))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := memNow()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for i := range n {
		wg.Go(func() {
			params := fmt.Appendf(nil, `{"i":%d}`, i)
			out, err := e.client.Invoke(ctx, "scale", "sleep", params)
			if err == nil && !bytes.Equal(out, params) {
				err = fmt.Errorf("got %s back for %s", out, params)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	var peak memSample
	select {
	case <-allIn:
	case <-ctx.Done():
	}
	inAt := time.Since(start)
	peak = memNow()
	releasedAt := time.Since(start)
	close(release)
	wg.Wait()
	wall := time.Since(start)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d calls failed; first: %v", f, n, firstErr.Load())
	}
	if got := arrived.Load(); got != int64(n) {
		t.Fatalf("the function ran %d times for %d calls", got, n)
	}
	perCall := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	t.Logf("%d calls in flight at once: all in the function after %v, all answered %v after they were let go (each sleeps 50ms), %v in all",
		n, inAt.Round(time.Millisecond), (wall - releasedAt).Round(time.Millisecond), wall.Round(time.Millisecond))
	t.Logf("memory per call in flight: %.0f bytes (heap %.0f, goroutine stacks %.0f), %.1f goroutines",
		perCall(peak.heap+peak.stack, before.heap+before.stack), perCall(peak.heap, before.heap), perCall(peak.stack, before.stack),
		float64(peak.goroutines-before.goroutines)/float64(n))
}

// scaleHTTP sends n calls at once through the gateway over HTTP, with a
// client transport of at most conns connections.
func scaleHTTP(t *testing.T, n, conns int) {
	e := newEnv(t, nil)
	var inFlight, peak atomic.Int64
	e.service(t, "scale", map[string]mesh.Handler{
		"sleep": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			now := inFlight.Add(1)
			defer inFlight.Add(-1)
			for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
			}
			time.Sleep(50 * time.Millisecond)
			return c.Params(), nil
		}),
	}, mesh.WithMaxConcurrency(n))
	tr := &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for i := range n {
		wg.Go(func() {
			params := fmt.Appendf(nil, `{"i":%d}`, i)
			err := func() error {
				res, err := client.Post(e.http.URL+"/fn/scale/sleep", "application/json", bytes.NewReader(params))
				if err != nil {
					return err
				}
				defer res.Body.Close()
				out, err := io.ReadAll(res.Body)
				if err != nil {
					return err
				}
				if res.StatusCode != http.StatusOK || !bytes.Equal(out, params) {
					return fmt.Errorf("status %d, %s for %s", res.StatusCode, out, params)
				}
				return nil
			}()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d HTTP calls failed; first: %v", f, n, firstErr.Load())
	}
	t.Logf("%d HTTP calls over at most %d connections: all answered after %v, at most %d in the function at once",
		n, conns, wall.Round(time.Millisecond), peak.Load())
}

type memSample struct {
	heap, stack uint64
	goroutines  int
}

// memNow collects garbage, so that only live memory counts, and samples
// the heap and the goroutine stacks in use.
func memNow() memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}
