package reliability_test

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestTerminateUnderLoad stops one of two instances with SIGTERM while
// load runs: the instance drains (mesh's Service.Stop) and exits cleanly,
// and not one call fails.
func TestTerminateUnderLoad(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	p1 := startEcho(t, b.ClientURL(), "steady")
	p2 := startEcho(t, b.ClientURL(), "steady")
	g := newGateway(t, b.Conn(), gatewayConfig{})
	eventually(t, 10*time.Second, "two instances", func() bool { return len(instances(b.Conn(), "steady", 2)) == 2 })

	var (
		mu   sync.Mutex
		pids = map[int]int{} // whoami answers by pid
	)
	var load tally
	stop := make(chan struct{})
	wg := runLoad(g, &load, 4, stop, func(w, i int) call {
		switch i % 3 {
		case 0:
			return call{"steady", "sleep", `{"ms":20}`, []int{200}}
		case 1:
			return call{"steady", "echo", `{"n":1}`, []int{200}}
		}
		return call{"steady", "whoami", `{}`, []int{200}}
	})
	// whoami through a separate loop, to see which instances answer.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			a := g.post("steady", "whoami", "{}")
			load.add("steady.whoami", a, 200)
			if w, ok := whoOf(a); ok {
				mu.Lock()
				pids[w.PID]++
				mu.Unlock()
			}
		}
	})
	served := func(pid int) int { mu.Lock(); defer mu.Unlock(); return pids[pid] }

	// Four rounds: SIGTERM the older instance while it runs calls, then
	// start a new one, so every round drains with another instance up.
	victim, other := p1, p2
	for round := range 4 {
		eventually(t, 30*time.Second, "both instances to serve calls", func() bool {
			return served(victim.Cmd.Process.Pid) > 5 && served(other.Cmd.Process.Pid) > 5
		})
		eventually(t, 30*time.Second, "calls in flight on the instance", func() bool {
			return inFlight(b.Conn(), "steady."+victim.ID, 1) > 0
		})
		if err := victim.Terminate(); err != nil {
			t.Errorf("round %d: SIGTERM: %v; want a clean exit", round, err)
		}
		if lines := victim.Lines(); !slices.Contains(lines, "stopped") {
			t.Errorf("round %d: the instance printed %q; want stopped", round, lines)
		}
		atExit := load.total()
		eventually(t, 30*time.Second, "100 more calls after the instance left", func() bool { return load.total() >= atExit+100 })
		victim, other = other, startEcho(t, b.ClientURL(), "steady")
	}
	close(stop)
	wg.Wait()
	load.check(t)
	if n := load.count(200); n != load.total() {
		t.Errorf("%v; want every call to succeed", &load)
	}
	t.Logf("load through the SIGTERM: %v", &load)
}

func whoOf(a answer) (who, bool) {
	if a.status != 200 {
		return who{}, false
	}
	var w who
	return w, jsonUnmarshal(a.body, &w) == nil
}
