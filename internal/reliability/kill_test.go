package reliability_test

import (
	"testing"
	"time"
)

// TestKillInFlight SIGKILLs one of two instances while calls are in flight
// on both: every caller is answered 504 by its deadline, none hangs, calls
// made during the kill get 200 or 504, and once the broker has dropped the
// dead instance every new call succeeds on the survivor.
func TestKillInFlight(t *testing.T) {
	t.Parallel()
	const timeout = 4 * time.Second
	b := startBroker(t)
	p1 := startEcho(t, b.ClientURL(), "victim")
	p2 := startEcho(t, b.ClientURL(), "victim")
	g := newGateway(t, b.Conn(), gatewayConfig{Timeout: timeout})
	eventually(t, 10*time.Second, "two instances", func() bool { return len(instances(b.Conn(), "victim", 2)) == 2 })

	// Calls that would run for ten minutes: they end at their deadline.
	const k = 8
	results := make(chan answer, k)
	for range k {
		go func() { results <- g.post("victim", "sleep", `{"ms":600000}`) }()
	}
	eventually(t, 10*time.Second, "the calls in flight on the instances", func() bool {
		return inFlight(b.Conn(), "victim", 2) == k
	})

	// Load that keeps coming through the kill: calls of 5ms.
	var load tally
	stop := make(chan struct{})
	wg := runLoad(g, &load, 2, stop, func(int, int) call {
		return call{"victim", "sleep", `{"ms":5}`, []int{200, 504}}
	})
	clients := b.Server().NumClients()
	if err := p1.Kill(); err == nil {
		t.Fatal("SIGKILL: the process exited cleanly")
	}
	for range k {
		a := <-results
		if a.status != 504 || a.dur > timeout+timeout/2 {
			t.Errorf("call in flight at the kill: %v; want 504 by its %v deadline", a, timeout)
		}
		if err := cleanError(a); err != nil {
			t.Error(err)
		}
	}

	// Once the broker has noticed the dead connection, nothing is routed
	// to it any more: every call succeeds, on the survivor.
	eventually(t, 10*time.Second, "the broker to drop the killed instance", func() bool {
		return b.Server().NumClients() < clients
	})
	for i := range 50 {
		w := decodeWho(t, g.post("victim", "whoami", "{}"))
		if w.PID != p2.Cmd.Process.Pid {
			t.Fatalf("call %d after the kill answered by pid %d; want the survivor %d", i, w.PID, p2.Cmd.Process.Pid)
		}
	}
	close(stop)
	wg.Wait()
	load.check(t)
	t.Logf("load during the kill: %v", &load)
}

// TestKillLastInstance SIGKILLs the only instance with calls in flight:
// they are answered 504 by their deadline, and every call after that
// fails fast with 503 instead of waiting for the timeout.
func TestKillLastInstance(t *testing.T) {
	t.Parallel()
	const timeout = 4 * time.Second
	b := startBroker(t)
	p := startEcho(t, b.ClientURL(), "lonely")
	g := newGateway(t, b.Conn(), gatewayConfig{Timeout: timeout})

	const k = 8
	results := make(chan answer, k)
	for range k {
		go func() { results <- g.post("lonely", "sleep", `{"ms":600000}`) }()
	}
	eventually(t, 10*time.Second, "the calls in flight", func() bool { return inFlight(b.Conn(), "lonely", 1) == k })
	_ = p.Kill()
	for range k {
		if a := <-results; a.status != 504 || a.dur > timeout+timeout/2 || cleanError(a) != nil {
			t.Errorf("call in flight at the kill: %v; want a clean 504 by the %v deadline", a, timeout)
		}
	}
	eventually(t, 10*time.Second, "the broker to drop the killed instance", func() bool {
		return len(instances(b.Conn(), "lonely", 0)) == 0 && g.post("lonely", "echo", "{}").status == 503
	})
	var slowest time.Duration
	defer func() { t.Logf("with no instance: 20 calls answered 503, the slowest in %v", slowest) }()
	for range 20 {
		a := g.post("lonely", "echo", "{}")
		slowest = max(slowest, a.dur)
		if a.status != 503 || a.dur > fast(timeout) {
			t.Fatalf("call with no instance: %v; want 503 within %v", a, fast(timeout))
		}
		if err := cleanError(a); err != nil {
			t.Fatal(err)
		}
	}
}
