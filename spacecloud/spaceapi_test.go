package spacecloud_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// spaceAPICall is one call the Node script makes with space-api.
type spaceAPICall struct {
	Client  string `json:"client,omitempty"` // "current" (0.19.3) or "legacy" (0.15.0)
	Token   string `json:"token,omitempty"`
	Service string `json:"service"`
	Func    string `json:"func"`
	Params  any    `json:"params,omitempty"`
	Timeout any    `json:"timeout,omitempty"` // absent: space-api's default
}

// spaceAPIResult is what space-api's call resolved to ({status, data})
// or why it rejected.
type spaceAPIResult struct {
	Status int             `json:"status"`
	Data   json.RawMessage `json:"data"`
	Threw  string          `json:"threw"`
}

// TestSpaceAPI calls a Go function and a JavaScript function through the
// Space Cloud endpoint with Space Cloud's own JavaScript client, the
// space-api npm package (0.19.3, the /services/ path, and 0.15.0, the
// /functions/ path), run by node: results, 401/403 and errors come back
// as Space Cloud users expect them.
func TestSpaceAPI(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: space-api is not tested (.ci/run installs its packages when npm is there)")
	}
	for _, dir := range []string{"testdata/node/node_modules/space-api", "testdata/node/node_modules/space-api-legacy", "../examples/nodeservice/node_modules/@nats-io/services"} {
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("%s is missing: run npm ci in its package's directory (.ci/run does)", dir)
		}
	}
	h := newHost(t, testProject)
	startNodeService(t, node, h.srv.ClientURL())

	ada := token(t, jwt.MapClaims{"sub": "ada"})
	calls := []spaceAPICall{
		{Service: "greeter", Func: "hello", Params: map[string]string{"name": "Ada"}},
		{Service: "nodegreeter", Func: "hello", Params: map[string]string{"name": "Ada"}},
		{Client: "legacy", Service: "greeter", Func: "hello", Params: map[string]string{"name": "Bo"}},
		{Client: "legacy", Service: "nodegreeter", Func: "hello", Params: map[string]string{"name": "Bo"}},
		{Token: ada, Service: "greeter", Func: "whoami", Params: map[string]any{}},
		{Token: ada, Service: "nodegreeter", Func: "whoami", Params: map[string]any{}},
		{Service: "nodegreeter", Func: "whoami", Params: map[string]any{}},
		{Token: "forged", Service: "greeter", Func: "hello"},
		{Token: ada, Service: "greeter", Func: "charge", Params: map[string]int{"amount": 500}},
		{Token: ada, Service: "greeter", Func: "charge", Params: map[string]int{"amount": 50}},
		{Service: "greeter", Func: "secret"},
		{Service: "nodegreeter", Func: "fail", Params: map[string]any{}},
		{Service: "greeter", Func: "conflict"},
		{Service: "greeter", Func: "broken"},
		{Service: "nodegreeter", Func: "nothing", Params: map[string]any{}},
		{Service: "greeter", Func: "slow", Timeout: 0.5},
		{Service: "greeter", Func: "deadline"},
	}
	want := []struct {
		status int
		data   string // the whole answer; "" checks it below
	}{
		{200, `{"result":{"greeting":"Hello, Ada!","from":"go"}}`},
		{200, `{"result":{"greeting":"Hello, Ada!","from":"javascript"}}`},
		{200, `{"result":{"greeting":"Hello, Bo!","from":"go"}}`},
		{200, `{"result":{"greeting":"Hello, Bo!","from":"javascript"}}`},
		{200, ""}, // claims checked below
		{200, ""},
		{401, ""},
		{401, `{"error":"invalid token"}`},
		{403, ""},
		{200, `{"result":{"charged":{"amount":50}}}`},
		{403, ""},
		{409, `{"error":"this function always fails with 409"}`},
		{409, `{"error":"the todo was changed meanwhile"}`},
		{500, `{"error":"internal error"}`},
		{404, ""},
		{504, `{"error":"deadline exceeded"}`},
		{200, ""}, // the deadline, checked below
	}
	got := runSpaceAPI(t, node, h.http.URL, calls)
	for i, c := range calls {
		g, w := got[i], want[i]
		if g.Threw != "" {
			t.Errorf("%s %s.%s: space-api rejected: %s", c.Client, c.Service, c.Func, g.Threw)
			continue
		}
		if g.Status != w.status || w.data != "" && string(g.Data) != w.data {
			t.Errorf("%s %s.%s: {status: %d, data: %s}; want %d %s", c.Client, c.Service, c.Func, g.Status, g.Data, w.status, w.data)
		}
		var a struct {
			Result json.RawMessage `json:"result"`
			Error  string          `json:"error"`
		}
		if err := json.Unmarshal(g.Data, &a); err != nil || (g.Status == 200) != (a.Result != nil) || (g.Status != 200) != (a.Error != "") {
			t.Errorf("%s.%s: data %s: want {\"result\"} with 200, {\"error\": \"...\"} otherwise", c.Service, c.Func, g.Data)
		}
	}
	for _, i := range []int{4, 5} {
		var who struct {
			Result struct{ Claims map[string]any } `json:"result"`
		}
		if err := json.Unmarshal(got[i].Data, &who); err != nil || who.Result.Claims["sub"] != "ada" {
			t.Errorf("%s.whoami with ada's token: %s; want her claims", calls[i].Service, got[i].Data)
		}
	}
	// space-api sends timeout 5000 when given none: Space Cloud's server
	// read seconds, so the gateway's maximum applies.
	var left struct{ Result int64 }
	if err := json.Unmarshal(got[16].Data, &left); err != nil || left.Result > gatewayMax.Milliseconds() || left.Result < gatewayMax.Milliseconds()-10_000 {
		t.Errorf("deadline with space-api's default timeout: %s; want close to the gateway's %v", got[16].Data, gatewayMax)
	}
}

// runSpaceAPI runs testdata/node/call.js with the calls and returns what
// space-api answered to each.
func runSpaceAPI(t *testing.T, node, baseURL string, calls []spaceAPICall) []spaceAPIResult {
	t.Helper()
	spec, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "call.js")
	cmd.Dir = filepath.Join("testdata", "node")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "BASE_URL=" + baseURL, "PROJECT=" + testProject, "CALLS=" + string(spec)}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node call.js: %v\n%s", err, stderr.Bytes())
	}
	var results []spaceAPIResult
	for line := range strings.Lines(string(out)) {
		var r spaceAPIResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("node call.js printed %q: %v", line, err)
		}
		results = append(results, r)
	}
	if len(results) != len(calls) {
		t.Fatalf("node call.js answered %d calls; want %d\n%s", len(results), len(calls), stderr.Bytes())
	}
	return results
}

// startNodeService runs the JavaScript service of examples/nodeservice as
// "nodegreeter" on the broker at natsURL, until the test ends.
func startNodeService(t *testing.T, node, natsURL string) {
	t.Helper()
	cmd := exec.Command(node, "service.mjs")
	cmd.Dir = filepath.Join("..", "examples", "nodeservice")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NATS_URL=" + natsURL, "MESH_SERVICE=nodegreeter"}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			if !said && strings.HasPrefix(sc.Text(), "ready: service nodegreeter") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the node service exited before it was ready")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the node service was not ready in 30s")
	}
}
