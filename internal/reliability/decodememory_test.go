package reliability_test

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
)

// TestParamsDecodeMemory is issue 16's item 1: anonymous callers sending
// bodies built to be costly to decode ([{},{},…], and objects whose key
// the policy reads hold them) to the quickstart's chain, its rules.json
// and policy.rego (which reads input.params.user) behind a 64 KiB body
// limit. Before the fix the middleware decoded every body whole, at 26 to
// 36 times its size, with nothing bounding how many at once. Now it
// decodes only what the policy reads, at most WithMaxDecoding calls at a
// time, and refuses a part read whole that would take more than 32 times
// its size: the heap must stay within a few times the bodies in flight.
func TestParamsDecodeMemory(t *testing.T) {
	rules, err := os.ReadFile("../../examples/quickstart/rules.json")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("../../examples/quickstart/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t)
	startEcho(t, b.ClientURL(), "greeter")
	startEcho(t, b.ClientURL(), "accounts")
	g := newGateway(t, b.Conn(), gatewayConfig{Policy: []authz.Option{
		authz.RulesJSON(rules), authz.Module("policy.rego", string(policy)),
	}})

	fill := func(prefix, suffix string) string {
		n := (bodyLimit - len(prefix) - len(suffix) - 4) / 3
		return prefix + "[" + strings.Repeat("{},", n) + "{}]" + suffix
	}
	// greeter.hello's decision reads nothing of the params (the rules
	// allow it and the policy allows whatever is not accounts.profile),
	// so its bodies are not decoded at all once its plan is made (until
	// then, the whole decision is evaluated, which reads
	// input.params.user: 413 for a costly user); accounts.profile's reads
	// input.params.user. echosvc has no hello: the gateway answers 404,
	// or 503 when its look for the service times out on a busy machine.
	bodies := []struct {
		function, body string
		status         []int
	}{
		{"hello", fill("", ""), []int{404, 429, 503}},
		{"hello", fill(`{"user": `, "}"), []int{404, 413, 429, 503}},
		{"profile", fill("", ""), []int{401, 429}},                        // no user: decoded no further than the top
		{"profile", fill(`{"user": "u1", "pad": `, "}"), []int{401, 429}}, // the user, the rest skipped
		{"profile", fill(`{"pad": `, `, "user": "u1"}`), []int{401, 429}}, // the same, user last
		{"profile", fill(`{"user": `, "}"), []int{413, 429}},              // user is the array, read whole: too costly
		{"profile", fill(`{"user": {"a": `, "}}"), []int{413, 429}},       // user an object holding it: the same
	}
	for _, bd := range bodies {
		if len(bd.body) > bodyLimit {
			t.Fatalf("body of %d bytes over the limit", len(bd.body))
		}
	}
	const concurrent, waves = 70, 6
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	wave := func(c *tally) {
		var wg sync.WaitGroup
		for i := range concurrent {
			bd := bodies[i%len(bodies)]
			service := map[string]string{"hello": "greeter", "profile": "accounts"}[bd.function]
			wg.Go(func() { c.add(service+"."+bd.function, g.post(service, bd.function, bd.body), bd.status...) })
		}
		wg.Wait()
	}
	wave(&tally{})
	base := heap()

	var peak atomic.Uint64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
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
	start := time.Now()
	for range waves {
		wave(&c)
	}
	elapsed := time.Since(start)
	close(done)
	sampler.Wait()
	c.check(t)
	const mib = 1 << 20
	inFlight := concurrent * bodyLimit
	t.Logf("%v in %v; heap %d MiB before, peak %d MiB; %d KiB of bodies in flight per wave",
		&c, elapsed.Round(time.Millisecond), base/mib, peak.Load()/mib, inFlight>>10)
	// Each call in flight holds its body a few times on its way (the
	// HTTP server's buffers, authz's copy, the NATS message, the echo),
	// and what authz decodes of it is a few bytes: 8 times the bodies in
	// flight and 16 MiB for the rest is a bound with room. Decoding the
	// bodies whole took 26 to 36 times each.
	if grow := int64(peak.Load()) - int64(base); grow > int64(8*inFlight+16*mib) {
		t.Errorf("heap grew by %d MiB under load; want at most %d MiB", grow/mib, (8*inFlight+16*mib)/mib)
	}
}
