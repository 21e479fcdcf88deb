package reliability_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
)

// nestedPolicy lets every HTTP caller call anything, and a function call
// a function only as the rule after it says: written to a file, so that a
// test can change it and reload.
const nestedPolicy = `package funcmesh.authz

default allow := false

allow if input.caller == null

# alpha's function "call" may call bravo.%s for a signed-in user.
allow if {
	input.caller.service == "alpha"
	input.caller.function == "call"
	input.service == "bravo"
	input.function == "%s"
	input.auth.sub == "u1"
}
`

func writePolicy(t *testing.T, dir, fn string) {
	t.Helper()
	src := strings.ReplaceAll(nestedPolicy, "%s", fn)
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNestedPolicy: service alpha, in a process of its own with alpha's
// credentials, calls bravo (another process). The host's Rego policy,
// which reads input.caller and input.auth, decides each nested call; a
// reload applies to the very next one.
func TestNestedPolicy(t *testing.T) {
	t.Parallel()
	b := startBroker(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	alpha, _ := b.ServiceCredentials("alpha")
	bravo, _ := b.ServiceCredentials("bravo")
	startEcho(t, withCreds(t, b.ClientURL(), alpha), "alpha")
	startEcho(t, withCreds(t, b.ClientURL(), bravo), "bravo")
	dir := t.TempDir()
	writePolicy(t, dir, "whoami")
	g := newGateway(t, b.Conn(), gatewayConfig{Policy: []authz.Option{authz.Files(dir)}})
	u1 := bearer(token(t, "u1"))

	a := g.post("alpha", "call", `{"service":"bravo","function":"whoami"}`, "Authorization", u1, "X-Request-Id", "nested-1")
	w := decodeWho(t, a)
	if w.Caller != "alpha.call" || w.Claims["sub"] != "u1" || w.RequestID != "nested-1" {
		t.Errorf("bravo.whoami saw %+v; want caller alpha.call, the claims of u1, request ID nested-1", w)
	}
	before := counts(t, g, "bravo")
	for _, tc := range []struct {
		name, body string
		hdr        []string
	}{
		{"anonymous", `{"service":"bravo","function":"whoami"}`, nil},
		{"another user", `{"service":"bravo","function":"whoami"}`, []string{"Authorization", bearer(token(t, "u2"))}},
		{"another function", `{"service":"bravo","function":"echo","params":{"x":1}}`, []string{"Authorization", u1}},
	} {
		if a := g.post("alpha", "call", tc.body, tc.hdr...); a.status != 403 || cleanError(a) != nil {
			t.Errorf("%s: %v; want 403 from the policy", tc.name, a)
		}
	}
	if after := counts(t, g, "bravo"); after["whoami"] != before["whoami"] || after["echo"] != before["echo"] {
		t.Errorf("bravo ran %v after the denials; before %v: denied calls must not reach it", after, before)
	}

	// The policy changes: echo is allowed now, whoami no longer.
	writePolicy(t, dir, "echo")
	if err := g.policy.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := g.post("alpha", "call", `{"service":"bravo","function":"echo","params":{"x":1}}`, "Authorization", u1); a.status != 200 || string(a.body) != `{"x":1}` {
		t.Errorf("echo after the reload: %v; want 200 {\"x\":1}", a)
	}
	if a := g.post("alpha", "call", `{"service":"bravo","function":"whoami"}`, "Authorization", u1); a.status != 403 {
		t.Errorf("whoami after the reload: %v; want 403", a)
	}
}

// TestNestedRouterStops: the host's router goes away while nested calls
// are in flight (its connection closes, as when the host process dies).
// Every caller is answered by its deadline: the nested calls in flight
// 504 at the deadline the calling function gave them, later ones 503 at
// once; a new router serves them again.
func TestNestedRouterStops(t *testing.T) {
	t.Parallel()
	b := startBroker(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	alpha, _ := b.ServiceCredentials("alpha")
	bravo, _ := b.ServiceCredentials("bravo")
	startEcho(t, withCreds(t, b.ClientURL(), alpha), "alpha")
	startEcho(t, withCreds(t, b.ClientURL(), bravo), "bravo")
	rc, err := b.NewConn("router")
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, b.Conn(), gatewayConfig{RouterConn: rc})
	const nestedTimeout = 1500 * time.Millisecond

	// Graceful first: Stop lets the calls in flight finish.
	var wg sync.WaitGroup
	answers := make([]answer, 4)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = g.post("alpha", "call", `{"service":"bravo","function":"sleep","params":{"ms":300}}`)
		}()
	}
	eventually(t, 5*time.Second, "the calls to reach bravo", func() bool { return inFlight(b.Conn(), "bravo", 1) >= 4 })
	other, err := b.NewConn("router2")
	if err != nil {
		t.Fatal(err)
	}
	g2 := newGateway(t, b.Conn(), gatewayConfig{RouterConn: other})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.router.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wg.Wait()
	for _, a := range answers {
		if a.status != 200 {
			t.Errorf("a call in flight while its router stopped gracefully: %v; want 200", a)
		}
	}
	// The other router takes the calls now.
	if a := g.post("alpha", "call", `{"service":"bravo","function":"echo","params":1}`); a.status != 200 {
		t.Errorf("a call after one of two routers stopped: %v; want 200", a)
	}

	// Then the hard way: the remaining router's connection dies with calls
	// in flight.
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = g.post("alpha", "call", `{"service":"bravo","function":"sleep","params":{"ms":3000},"timeout_ms":1500}`)
		}()
	}
	eventually(t, 5*time.Second, "the calls to reach bravo", func() bool { return inFlight(b.Conn(), "bravo", 1) >= 4 })
	start := time.Now()
	other.Close()
	wg.Wait()
	for _, a := range answers {
		if a.status != 504 || cleanError(a) != nil {
			t.Errorf("a call in flight when the router died: %v; want 504", a)
		}
	}
	if d := time.Since(start); d > nestedTimeout+slack {
		t.Errorf("the calls took %v after the router died; want about %v", d, nestedTimeout)
	}
	a := g2.post("alpha", "call", `{"service":"bravo","function":"echo","params":1}`)
	if a.status != 503 || a.dur > fast(callTimeout) {
		t.Errorf("a nested call with no router: %v; want 503 at once", a)
	}
	newGateway(t, b.Conn(), gatewayConfig{})
	if a := g2.post("alpha", "call", `{"service":"bravo","function":"echo","params":1}`); a.status != 200 {
		t.Errorf("a nested call once a router runs again: %v; want 200", a)
	}
}
