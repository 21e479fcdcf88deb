package examples_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNodeService runs the JavaScript service (examples/nodeservice) with
// node, joined to existingapp's broker with the credentials existingapp
// printed for it, and calls it through existingapp's gateway.
func TestNodeService(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the JavaScript service is not tested (.ci/run installs its packages when npm is there)")
	}
	if _, err := os.Stat(filepath.Join("nodeservice", "node_modules", "@nats-io", "services")); err != nil {
		t.Skip("examples/nodeservice/node_modules is missing: run npm ci in examples/nodeservice (.ci/run does)")
	}
	app := startExistingApp(t)
	base := app.base

	js := startProc(t, "nodeservice", cleanEnv(app.creds["nodegreeter"]...), node, "service.mjs")
	js.waitLine(t, "ready: service nodegreeter", 30*time.Second)

	if res := post(t, base+"/fn/nodegreeter/hello", `{"name":"Ada"}`); res.status != 200 || string(res.body) != `{"greeting":"Hello, Ada!","from":"javascript"}` {
		t.Errorf("hello: %d %s; want 200 {\"greeting\":\"Hello, Ada!\",\"from\":\"javascript\"}", res.status, res.body)
	}

	res := post(t, base+"/fn/nodegreeter/whoami", ``, "Authorization", "Bearer "+app.pr.vars["TOKEN"], "X-Request-Id", "node-test-1")
	var who struct {
		Claims    map[string]any
		RequestID string `json:"requestId"`
		Caller    *string
	}
	if err := json.Unmarshal(res.body, &who); res.status != 200 || err != nil {
		t.Fatalf("whoami: %d %s (%v)", res.status, res.body, err)
	}
	if who.Claims["sub"] != "ada" || who.Claims["name"] != "Ada Lovelace" || who.RequestID != "node-test-1" || who.Caller != nil {
		t.Errorf("whoami saw claims %v, request ID %q, caller %v; want sub ada, node-test-1, none", who.Claims, who.RequestID, who.Caller)
	}
	if res := post(t, base+"/fn/nodegreeter/whoami", ``); res.status != 401 {
		t.Errorf("whoami without a token: %d %s; want 401 (the rules)", res.status, res.body)
	}

	// A nested call from JavaScript to the Go service, through the host's
	// router and policy: allowed to greeter, refused (403) to anything
	// else. The Go service sees the claims and the calling function.
	goSvc := startProc(t, "", cleanEnv(app.creds["greeter"]...), binary(t, "service"))
	goSvc.waitLine(t, "ready: service greeter", 30*time.Second)
	res = post(t, base+"/fn/nodegreeter/relay", `{"service":"greeter","function":"whoami"}`, "Authorization", "Bearer "+app.pr.vars["TOKEN"], "X-Request-Id", "node-nested-1")
	var nested struct {
		Result struct {
			Claims    map[string]any
			RequestID string `json:"requestId"`
			Caller    *string
		}
	}
	if err := json.Unmarshal(res.body, &nested); res.status != 200 || err != nil {
		t.Fatalf("nodegreeter.relay → greeter.whoami: %d %s (%v)", res.status, res.body, err)
	}
	if r := nested.Result; r.Claims["sub"] != "ada" || r.RequestID != "node-nested-1" || r.Caller == nil || *r.Caller != "nodegreeter.relay" {
		t.Errorf("greeter.whoami called from JavaScript saw %s; want sub ada, node-nested-1, caller nodegreeter.relay", res.body)
	}
	if res := post(t, base+"/fn/nodegreeter/relay", `{"service":"greeter","function":"hello","params":{"name":"Ada"}}`); res.status != 200 || string(res.body) != `{"result":{"greeting":"Hello, Ada!","from":"go"}}` {
		t.Errorf("nodegreeter.relay → greeter.hello: %d %s", res.status, res.body)
	}
	if res := post(t, base+"/fn/nodegreeter/relay", `{"service":"nodegreeter","function":"hello"}`); res.status != 403 || !strings.Contains(string(res.body), "functions may call only greeter") {
		t.Errorf("nodegreeter.relay → nodegreeter.hello: %d %s; want the policy's 403", res.status, res.body)
	}

	res = post(t, base+"/fn/nodegreeter/fail", `{}`)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(res.body, &e); res.status != 409 || err != nil || e.Error.Code != "conflict" || e.Error.Message != "this function always fails with 409" {
		t.Errorf("fail: %d %s; want 409 conflict with the function's message", res.status, res.body)
	}
	if res := post(t, base+"/fn/nodegreeter/hello", `{`); res.status != 400 {
		t.Errorf("hello with params that are not JSON: %d %s; want 400", res.status, res.body)
	}
	if res := post(t, base+"/fn/nodegreeter/nothing", `{}`); res.status != 404 {
		t.Errorf("a function nodegreeter does not have: %d %s; want 404", res.status, res.body)
	}

	// Discovery sees a service in another language like any other.
	listing := get(t, base+"/fn")
	if !strings.Contains(string(listing.body), `"name":"nodegreeter","functions":["fail","hello","relay","whoami"]`) {
		t.Errorf("GET /fn: %s; want nodegreeter with fail, hello, relay, whoami", listing.body)
	}

	if err := js.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("node service after SIGTERM: %v; want exit 0", err)
	}
	if res := post(t, base+"/fn/nodegreeter/hello", `{}`); res.status != 503 {
		t.Errorf("hello after the node service stopped: %d %s; want 503", res.status, res.body)
	}
}
