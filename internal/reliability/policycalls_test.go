package reliability_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// policyCallsRego is the policy of the policy-call tests: every decision
// but echo's own functions asks a function.
const policyCallsRego = `package funcmesh.authz

default allow := false

# echo.echo: allowed when the function the policy asks sees the policy
# as its caller.
allow if {
	input.service == "echo"
	input.function == "echo"
	not input.params.via
	funcmesh.call("echo", "whoami", {}).caller == "authz.policy"
}

# The same with the JavaScript service's whoami.
allow if {
	input.service == "echo"
	input.function == "echo"
	input.params.via == "node"
	funcmesh.call("nodegreeter", "whoami", {}).caller == "authz.policy"
}

# shop.buy and shop.buy2: echo.call makes a nested call to the other,
# whose decision would ask echo.call again, and so on.
allow if {
	input.service == "shop"
	input.function == "buy"
	funcmesh.call("echo", "call", {"service": "shop", "function": "buy2"})
}

allow if {
	input.service == "shop"
	input.function == "buy2"
	funcmesh.call("echo", "call", {"service": "shop", "function": "buy"})
}

# shop.nbuy and shop.nbuy2: the same through the JavaScript service's
# relay.
allow if {
	input.service == "shop"
	input.function == "nbuy"
	funcmesh.call("nodegreeter", "relay", {"service": "shop", "function": "nbuy2"})
}

allow if {
	input.service == "shop"
	input.function == "nbuy2"
	funcmesh.call("nodegreeter", "relay", {"service": "shop", "function": "nbuy"})
}

# echo.sleep and shop.target: allowed when rogue.check acks.
allow if {
	input.function in {"sleep", "target"}
	funcmesh.call("rogue", "check", {}).ack == true
}

allow if {
	input.service == "echo"
	input.function in {"whoami", "count", "call"}
}
`

// policyCallsEnv is a host whose policy calls functions through a
// mesh.Client with the host's signer, on a broker with per-service
// credentials, and echosvc as service echo in its own process.
type policyCallsEnv struct {
	b *broker.Broker
	g *gateway
}

func newPolicyCallsEnv(t *testing.T) *policyCallsEnv {
	t.Helper()
	b := startBroker(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	echo, err := b.ServiceCredentials("echo")
	if err != nil {
		t.Fatal(err)
	}
	startEcho(t, withCreds(t, b.ClientURL(), echo), "echo")
	policyClient, err := mesh.NewClient(b.Conn(), mesh.WithClaimsSigner(signer))
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, b.Conn(), gatewayConfig{Policy: []authz.Option{
		authz.Module("policy.rego", policyCallsRego),
		authz.WithCall(policyClient.Invoke),
	}})
	return &policyCallsEnv{b: b, g: g}
}

// serviceConn connects as service with its credentials, its inbox under
// its own prefix, as a service not written with funcmesh would.
func (e *policyCallsEnv) serviceConn(t *testing.T, service string) *nats.Conn {
	t.Helper()
	creds, err := e.b.ServiceCredentials(service)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.b.ClientURL(), creds.Option(), nats.CustomInboxPrefix(transport.InboxPrefix(service)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestPolicyCaller: a function the policy calls, in its own process, sees
// Mesh-Caller authz.policy, through HTTP, for an anonymous caller and a
// signed-in one; no service can make a call that reaches a function as
// authz.policy, not even one named authz.
func TestPolicyCaller(t *testing.T) {
	t.Parallel()
	e := newPolicyCallsEnv(t)
	for _, hdr := range [][]string{nil, {"Authorization", bearer(token(t, "u1"))}} {
		if a := e.g.post("echo", "echo", `{"x":1}`, hdr...); a.status != 200 || string(a.body) != `{"x":1}` {
			t.Errorf("echo.echo (headers %q), allowed only when echo.whoami sees authz.policy as its caller: %v", hdr, a)
		}
	}

	before := counts(t, e.g, "echo")
	// A service named authz, with its own credentials, on its call route.
	nc := e.serviceConn(t, "authz")
	call := func(caller string) (*nats.Msg, error) {
		m := nats.NewMsg("call.authz.echo.whoami")
		m.Header.Set(transport.HeaderCaller, caller)
		return nc.RequestMsg(m, 5*time.Second)
	}
	m, err := call("authz.policy")
	if err != nil {
		t.Fatal(err)
	}
	if e := transport.ErrorFromHeaders(m.Header); e == nil || e.HTTPStatus() != 403 {
		t.Errorf("service authz calling as authz.policy: %v %s; want 403", e, m.Data)
	}
	// The same service under another function name is an ordinary caller.
	m, err = call("authz.other")
	if err != nil {
		t.Fatal(err)
	}
	var w who
	if e := transport.ErrorFromHeaders(m.Header); e != nil || json.Unmarshal(m.Data, &w) != nil || w.Caller != "authz.other" {
		t.Errorf("service authz calling as authz.other: %v %s; want whoami's answer naming authz.other", e, m.Data)
	}
	// Another service cannot name authz at all, nor call echo directly.
	var perr permErrors
	evil, err := nats.Connect(e.b.ClientURL(), mustCreds(t, e.b, "evil").Option(), nats.CustomInboxPrefix(transport.InboxPrefix("evil")), perr.option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(evil.Close)
	m = nats.NewMsg("call.evil.echo.whoami")
	m.Header.Set(transport.HeaderCaller, "authz.policy")
	if r, err := evil.RequestMsg(m, 5*time.Second); err != nil || transport.ErrorFromHeaders(r.Header) == nil || transport.ErrorFromHeaders(r.Header).HTTPStatus() != 400 {
		t.Errorf("service evil calling as authz.policy: %v, %v; want 400", r, err)
	}
	direct := nats.NewMsg("fn.echo.whoami")
	direct.Header.Set(transport.HeaderCaller, "authz.policy")
	direct.Reply = "_INBOX_evil.direct"
	if err := evil.PublishMsg(direct); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the server to refuse evil's direct call", func() bool { return perr.violation("fn.echo.whoami") })
	if after := counts(t, e.g, "echo"); after["whoami"] != before["whoami"]+1 {
		t.Errorf("echo.whoami ran %d times during the attacks; want once (authz.other's call)", after["whoami"]-before["whoami"])
	}
}

func mustCreds(t *testing.T, b *broker.Broker, service string) broker.Credentials {
	t.Helper()
	c, err := b.ServiceCredentials(service)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPolicyCallRecursion: echo.call, in its own process, called by the
// policy to decide shop.buy, makes a nested call to shop.buy2, whose
// decision would call echo.call again, which would call shop.buy, …. The
// mark the host signs into the policy's call travels with the nested
// call, so the policy makes no call while deciding it: echo.call runs
// once per request, whoever calls.
func TestPolicyCallRecursion(t *testing.T) {
	t.Parallel()
	e := newPolicyCallsEnv(t)
	for _, hdr := range [][]string{nil, {"Authorization", bearer(token(t, "u1"))}} {
		before := counts(t, e.g, "echo")
		if a := e.g.post("shop", "buy", `{}`, hdr...); a.status != 403 {
			t.Errorf("shop.buy (headers %q): %v; want 403", hdr, a)
		}
		if n := counts(t, e.g, "echo")["call"] - before["call"]; n != 1 {
			t.Errorf("shop.buy (headers %q): echo.call ran %d times; want once: its nested call's decision must not call it again", hdr, n)
		}
	}
}

// TestPolicyCallMarkForged: a rogue service, with its own credentials,
// whose function the policy calls, tries to make its nested calls look
// like calls made outside a policy call (so that their decision asks it
// again): the mark stripped from the signature, the signature dropped,
// the request ID or the claims changed. Each is refused with 401 before
// any decision; the call as received is decided without policy calls
// (403), and the rogue is asked once.
func TestPolicyCallMarkForged(t *testing.T) {
	t.Parallel()
	e := newPolicyCallsEnv(t)
	nc := e.serviceConn(t, "rogue")
	type result struct {
		status int
		err    error
	}
	var (
		mu      sync.Mutex
		asked   int
		caller  string // the Mesh-Caller of the policy's call
		results = map[string]result{}
	)
	nested := func(h nats.Header) result {
		m := nats.NewMsg("call.rogue.shop.target")
		m.Header = h
		r, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			return result{err: err}
		}
		if e := transport.ErrorFromHeaders(r.Header); e != nil {
			return result{status: e.HTTPStatus()}
		}
		return result{status: 200}
	}
	_, err := nc.QueueSubscribe("fn.rogue.check", transport.QueueGroup, func(m *nats.Msg) {
		mu.Lock()
		asked++
		first := asked == 1
		mu.Unlock()
		if first {
			got := func(change func(h nats.Header)) nats.Header {
				h := nats.Header{}
				for _, k := range []string{transport.HeaderAuth, transport.HeaderAuthSig, transport.HeaderRequestID, transport.HeaderDeadline} {
					if v := m.Header.Get(k); v != "" {
						h.Set(k, v)
					}
				}
				h.Set(transport.HeaderCaller, "rogue.check")
				change(h)
				return h
			}
			sig := m.Header.Get(transport.HeaderAuthSig)
			for name, change := range map[string]func(nats.Header){
				"as received":   func(nats.Header) {},
				"mark stripped": func(h nats.Header) { h.Set(transport.HeaderAuthSig, "v1"+sig[2:]) },
				"sig dropped":   func(h nats.Header) { h.Del(transport.HeaderAuthSig) },
				"other request": func(h nats.Header) { h.Set(transport.HeaderRequestID, "forged-request") },
				"other claims":  func(h nats.Header) { h.Set(transport.HeaderAuth, `{"sub":"admin"}`) },
				"later deadline": func(h nats.Header) {
					h.Set(transport.HeaderDeadline, strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
				},
			} {
				r := nested(got(change))
				mu.Lock()
				results[name] = r
				mu.Unlock()
			}
			mu.Lock()
			caller = m.Header.Get(transport.HeaderCaller)
			mu.Unlock()
		}
		_ = m.Respond([]byte(`{"ack": true}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if a := e.g.post("echo", "sleep", `{"ms": 1}`, "Authorization", bearer(token(t, "u1"))); a.status != 200 {
		t.Fatalf("echo.sleep, allowed by rogue.check's ack: %v", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked != 1 || caller != "authz.policy" {
		t.Errorf("rogue.check was asked %d times, by %q; want once, by authz.policy", asked, caller)
	}
	want := map[string]int{
		"as received": 403, "mark stripped": 401, "sig dropped": 401, "other request": 401,
		"other claims": 401, "later deadline": 401,
	}
	for name, status := range want {
		if r := results[name]; r.err != nil || r.status != status {
			t.Errorf("%s: %d, %v; want %d", name, r.status, r.err, status)
		}
	}
}

// TestPolicyCallsNode: the same guarantees with the JavaScript service of
// examples/nodeservice, which passes Mesh-Auth-Sig on as the wire
// contract says: its whoami, called by the policy, sees authz.policy, and
// its relay, called by the policy, calls back into a function whose
// decision would ask it again: it runs once per request (counted by a
// host connection that sees every call to it).
func TestPolicyCallsNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir := filepath.Join("..", "..", "examples", "nodeservice")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@nats-io", "services")); err != nil {
		t.Skip("examples/nodeservice/node_modules is missing: run npm ci there (.ci/run does)")
	}
	e := newPolicyCallsEnv(t)
	creds := mustCreds(t, e.b, "nodegreeter")
	cmd := exec.Command(node, "service.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NATS_URL="+e.b.ClientURL(), "NATS_USER="+creds.User, "NATS_PASSWORD="+creds.Password, "MESH_SERVICE=nodegreeter")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the node service exited before it was ready")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the node service did not get ready in 30s")
	}

	spy, err := e.b.NewConn("spy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(spy.Close)
	sub, err := spy.SubscribeSync("fn.nodegreeter.relay")
	if err != nil {
		t.Fatal(err)
	}
	// relays returns how many calls to nodegreeter.relay the broker has
	// delivered since the last time: after the flush's round trip, every
	// call routed before it waits in the subscription.
	relays := func() int {
		if err := spy.Flush(); err != nil {
			t.Fatal(err)
		}
		n, _, err := sub.Pending()
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if _, err := sub.NextMsg(time.Second); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	relays()
	for _, hdr := range [][]string{nil, {"Authorization", bearer(token(t, "u1"))}} {
		if a := e.g.post("echo", "echo", `{"via":"node"}`, hdr...); a.status != 200 {
			t.Errorf("echo.echo (headers %q), allowed only when nodegreeter.whoami sees authz.policy as its caller: %v", hdr, a)
		}
		relays()
		if a := e.g.post("shop", "nbuy", `{}`, hdr...); a.status != 403 {
			t.Errorf("shop.nbuy (headers %q): %v; want 403", hdr, a)
		}
		if n := relays(); n != 1 {
			t.Errorf("shop.nbuy (headers %q): nodegreeter.relay was called %d times; want once", hdr, n)
		}
	}
}
