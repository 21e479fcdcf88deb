package reliability_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOverloadService sends more concurrent calls than an instance's
// concurrency bound: the calls over the bound are refused with 429 at
// once (after the client's quick retries), not queued until a slot frees,
// and the others succeed.
func TestOverloadService(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	startEcho(t, b.ClientURL(), "busy", "-max-concurrency", "4")
	g := newGateway(t, b.Conn(), gatewayConfig{})
	overload(t, g, "busy", 4, 40)
}

// TestOverloadGateway does the same against the gateway's own bound,
// Gateway.MaxInFlight, in front of an instance that would take them all.
func TestOverloadGateway(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	startEcho(t, b.ClientURL(), "wide")
	g := newGateway(t, b.Conn(), gatewayConfig{MaxInFlight: 6})
	overload(t, g, "wide", 6, 40)
}

// overload makes n concurrent calls that each hold a slot for 3s, against
// a bound of slots: slots of them succeed after the 3s, the rest get a
// clean 429 well before.
func overload(t *testing.T, g *gateway, service string, slots, n int) {
	t.Helper()
	const hold = 3 * time.Second
	var c tally
	var wg sync.WaitGroup
	var slowest atomic.Int64 // of the 429s
	for range n {
		wg.Go(func() {
			a := g.post(service, "sleep", fmt.Sprintf(`{"ms":%d}`, hold.Milliseconds()))
			for a.status == 429 {
				old := slowest.Load()
				if int64(a.dur) <= old || slowest.CompareAndSwap(old, int64(a.dur)) {
					break
				}
			}
			c.add(service+".sleep", a, 200, 429)
			switch {
			case a.status == 429 && a.dur > fast(g.timeout):
				t.Errorf("429 after %v; want it within %v", a.dur, fast(g.timeout))
			case a.status == 200 && a.dur < hold:
				t.Errorf("200 after %v, before the function could have slept %v", a.dur, hold)
			}
		})
	}
	wg.Wait()
	c.check(t)
	if ok := c.count(200); ok < slots || c.count(429) == 0 || ok+c.count(429) != n {
		t.Errorf("%v; want %d or a few more successes, the rest 429", &c, slots)
	}
	t.Logf("%d concurrent calls, %d slots: %v; the slowest 429 in %v", n, slots, &c, time.Duration(slowest.Load()))
}

// TestOverloadMemory keeps a service with 4 slots under waves of 150
// concurrent calls with 32 KiB bodies, 65 MiB in all: the heap stays
// bounded by the calls in flight, not by the calls made, and comes back
// once the load is gone. It does not run in parallel, so that the heap is
// its own.
func TestOverloadMemory(t *testing.T) {
	b := startBroker(t)
	startEcho(t, b.ClientURL(), "flood", "-max-concurrency", "4")
	g := newGateway(t, b.Conn(), gatewayConfig{})
	const concurrent, waves = 150, 14
	body := `{"ms":50,"pad":"` + strings.Repeat("x", 32<<10) + `"}`

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// One wave first, so pools and buffers that stay are in the baseline.
	wave := func(c *tally) {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() { c.add("flood.sleep", g.post("flood", "sleep", body), 200, 429) })
		}
		wg.Wait()
	}
	wave(&tally{})
	base := heap()

	var peak atomic.Uint64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	var c tally
	for range waves {
		wave(&c)
	}
	close(done)
	sampler.Wait()
	g.client.CloseIdleConnections()
	end := heap()
	c.check(t)
	if c.count(429) == 0 {
		t.Errorf("%v; want the service overloaded", &c)
	}
	const mib = 1 << 20
	t.Logf("%v; heap %d MiB before, peak %d MiB, %d MiB after; %d MiB of bodies sent",
		&c, base/mib, peak.Load()/mib, end/mib, waves*concurrent*len(body)/mib)
	// 150 calls in flight with 32 KiB each, held in a few buffers on
	// their way (HTTP, gateway, NATS), is some 20 MiB; the bodies sent
	// add up to 65 MiB.
	if grow := int64(peak.Load()) - int64(base); grow > 32*mib {
		t.Errorf("heap grew by %d MiB under load; want it bounded by the calls in flight", grow/mib)
	}
	if grow := int64(end) - int64(base); grow > 8*mib {
		t.Errorf("heap is %d MiB larger after the load; want it back", grow/mib)
	}
}
