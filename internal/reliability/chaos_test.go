package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/funcmesh/funcmesh/internal/meshtest"
	"github.com/funcmesh/funcmesh/mesh"
)

// chaosSeed fixes the chaos loop's choices: the actions, the instances
// they hit and the calls the workers make.
const chaosSeed = 20260806

// TestChaos keeps load on the gateway while instances of the service are
// started, killed (SIGKILL), stopped (SIGTERM) and restarted at random,
// with a fixed seed and a fixed number of rounds. Every call must be
// answered, by its deadline, with a status its kind allows (success, the
// function's own error, or what the chaos can cause: 429, 503, 504) and a
// clean JSON error body; the answers must add up to the calls made, and
// to what the gateway's client counted; no goroutine may leak. It does
// not run in parallel, so that the goroutine count is its own.
func TestChaos(t *testing.T) {
	noLeak(t)
	rounds, budget := 24, 45*time.Second
	if testing.Short() {
		rounds, budget = 8, 20*time.Second
	}
	const timeout = 3 * time.Second
	const workers = 6
	rng := rand.New(rand.NewPCG(chaosSeed, 0))

	b := startBroker(t)
	metrics := mesh.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	g := newGateway(t, b.Conn(), gatewayConfig{Timeout: timeout, Client: []mesh.ClientOption{mesh.WithMetrics(metrics)}})

	var procs []*meshtest.Proc
	start := func() { procs = append(procs, startEcho(t, b.ClientURL(), "chaos", "-max-concurrency", "8")) }
	pick := func() *meshtest.Proc {
		i := rng.IntN(len(procs))
		p := procs[i]
		procs = slices.Delete(procs, i, i+1)
		return p
	}
	start()

	chaos := []int{429, 503, 504} // what chaos may do to any call
	statuses := []int{400, 403, 404, 409, 422, 500, 502, 503}
	wrng := make([]*rand.Rand, workers)
	for w := range wrng {
		wrng[w] = rand.New(rand.NewPCG(chaosSeed, uint64(w+1)))
	}
	load := tally{limit: 2 * timeout}
	stop := make(chan struct{})
	wg := runLoad(g, &load, workers, stop, func(w, _ int) call {
		r := wrng[w]
		switch n := r.IntN(100); {
		case n < 45:
			return call{"chaos", "echo", fmt.Sprintf(`{"n":%d}`, n), append([]int{200}, chaos...)}
		case n < 65:
			return call{"chaos", "sleep", fmt.Sprintf(`{"ms":%d}`, r.IntN(100)), append([]int{200}, chaos...)}
		case n < 80:
			s := statuses[r.IntN(len(statuses))]
			return call{"chaos", "fail", fmt.Sprintf(`{"status":%d}`, s), append([]int{s}, chaos...)}
		case n < 90:
			return call{"chaos", "whoami", `{}`, append([]int{200}, chaos...)}
		case n < 95:
			return call{"chaos", "error", `{}`, append([]int{500}, chaos...)}
		}
		return call{"chaos", "nope", `{}`, append([]int{404}, chaos...)}
	})

	began := time.Now()
	actions := map[string]int{}
	for round := range rounds {
		if time.Since(began) > budget {
			t.Logf("stopping after %d rounds: the %v budget is spent", round, budget)
			break
		}
		act := rng.IntN(4)
		switch {
		case len(procs) == 0 || act == 0 && len(procs) < 3:
			actions["start"]++
			start()
		case act == 0 || act == 1:
			actions["kill"]++
			_ = pick().Kill()
		case act == 2:
			actions["terminate"]++
			if err := pick().Terminate(); err != nil {
				t.Errorf("round %d: SIGTERM: %v; want a clean exit", round, err)
			}
		default:
			actions["restart"]++
			_ = pick().Kill()
			start()
		}
		mark := load.total()
		eventually(t, 30*time.Second, "40 more calls", func() bool { return load.total() >= mark+40 })
	}
	close(stop)
	wg.Wait()
	for _, p := range procs {
		_ = p.Kill()
	}

	load.check(t)
	load.mu.Lock()
	sum := 0
	for _, n := range load.byStatus {
		sum += n
	}
	made, answered, ok := load.made, load.answered, load.byStatus[200]
	load.mu.Unlock()
	if sum != answered || answered != made {
		t.Errorf("%d calls made, %d answered, %d counted by status", made, answered, sum)
	}
	// Every call passed the names and the policy, so the gateway's
	// client made each one, and counted it.
	calls, oks := clientCalls(t, reg)
	if calls != made || oks != ok {
		t.Errorf("the client counted %d calls, %d ok; the callers got %d answers, %d ok", calls, oks, made, ok)
	}
	t.Logf("chaos (seed %d, %v): actions %v; %v", chaosSeed, time.Since(began).Round(time.Second), actions, &load)
}

// clientCalls sums funcmesh_client_calls_total: all calls, and those with
// code "ok".
func clientCalls(t *testing.T, reg *prometheus.Registry) (all, ok int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "funcmesh_client_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := int(m.GetCounter().GetValue())
			all += n
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == "ok" {
					ok += n
				}
			}
		}
	}
	return all, ok
}
