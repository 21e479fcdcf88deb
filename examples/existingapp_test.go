package examples_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// existingApp is a running examples/existingapp and what it printed.
type existingApp struct {
	proc  *proc
	base  string // http://127.0.0.1:port
	nats  string // nats://127.0.0.1:port
	pr    printed
	creds map[string][]string // service name → its printed export line, as environment entries
}

// startExistingApp runs existingapp on random ports, printing credentials
// for greeter and nodegreeter.
func startExistingApp(t *testing.T) *existingApp {
	t.Helper()
	p := startProc(t, "", nil, binary(t, "existingapp"),
		"-addr", "127.0.0.1:0", "-nats", "127.0.0.1:0", "-services", "greeter,nodegreeter")
	lines := p.waitLine(t, "Ctrl-C stops the app gracefully.", 30*time.Second)
	app := &existingApp{
		proc:  p,
		base:  find(t, lines, `serving (http://\S+)`),
		nats:  find(t, lines, `NATS broker: (nats://\S+)`),
		pr:    parsePrinted(t, lines),
		creds: map[string][]string{},
	}
	for _, u := range []string{app.base, app.nats} {
		if pu, err := url.Parse(u); err != nil || pu.Port() == "" || pu.Port() == "0" {
			t.Fatalf("printed address %q; want the port picked", u)
		}
	}
	for _, vars := range app.pr.exports {
		var env []string
		for k, v := range vars {
			env = append(env, k+"="+v)
		}
		app.creds[vars["MESH_SERVICE"]] = env
	}
	for _, name := range []string{"greeter", "nodegreeter"} {
		if len(app.creds[name]) == 0 {
			t.Fatalf("no export line printed for %s", name)
		}
	}
	return app
}

func TestExistingAppAndService(t *testing.T) {
	t.Parallel()
	app := startExistingApp(t)
	base := app.base

	t.Run("the app's own routes", func(t *testing.T) {
		if res := get(t, base+"/healthz"); res.status != 200 || strings.TrimSpace(string(res.body)) != "ok" {
			t.Errorf("GET /healthz: %d %q; want 200 ok", res.status, res.body)
		}
		if res := get(t, base+"/"); res.status != 200 || !strings.Contains(string(res.body), "functions mesh") {
			t.Errorf("GET /: %d %q; want 200 and the page", res.status, res.body)
		}
		if res := get(t, base+"/nothing"); res.status != 404 {
			t.Errorf("GET /nothing: %d; want 404", res.status)
		}
	})

	t.Run("before the service runs", func(t *testing.T) {
		for _, tt := range []struct {
			path string
			want int
		}{
			{"/fn/greeter/hello", 503},
			{"/fn/payroll/run", 403},
			{"/fn/greeter/whoami", 401},
		} {
			if res := post(t, base+tt.path, `{}`); res.status != tt.want {
				t.Errorf("%s: %d %s; want %d", tt.path, res.status, res.body, tt.want)
			}
		}
	})

	// The service joins with the environment existingapp printed for it.
	svc := startProc(t, "", cleanEnv(app.creds["greeter"]...), binary(t, "service"))
	svc.waitLine(t, "ready: service greeter", 30*time.Second)

	t.Run("printed commands", func(t *testing.T) {
		runCurls(t, app.pr)
	})

	t.Run("claims and request ID reach the service", func(t *testing.T) {
		res := post(t, base+"/fn/greeter/whoami", ``, "Authorization", "Bearer "+app.pr.vars["TOKEN"], "X-Request-Id", "existingapp-test-1")
		var got struct {
			Claims    map[string]any
			RequestID string `json:"requestId"`
			Caller    *string
		}
		if err := json.Unmarshal(res.body, &got); res.status != 200 || err != nil {
			t.Fatalf("whoami: %d %s (%v)", res.status, res.body, err)
		}
		if got.Claims["sub"] != "ada" || got.RequestID != "existingapp-test-1" || got.Caller != nil {
			t.Errorf("whoami saw claims %v, request ID %q, caller %v; want sub ada, existingapp-test-1, none", got.Claims, got.RequestID, got.Caller)
		}
	})

	t.Run("the printed nats command's identity", func(t *testing.T) {
		// nats --server URL --user U --password P micro ls: check the
		// identity it names can list the services, as the CLI does.
		line := find(t, app.pr.lines, `^(nats --server .* micro ls)$`)
		words, err := shellWords(line, nil)
		if err != nil || len(words) != 9 || words[1] != "--server" || words[3] != "--user" || words[5] != "--password" {
			t.Fatalf("printed %q; want nats --server URL --user U --password P micro ls", line)
		}
		nc, err := nats.Connect(words[2], nats.UserInfo(words[4], words[6]))
		if err != nil {
			t.Fatalf("connecting as the printed identity: %v", err)
		}
		defer nc.Close()
		msg, err := nc.Request("$SRV.INFO.greeter", nil, 5*time.Second)
		if err != nil || !strings.Contains(string(msg.Data), `"name":"greeter"`) {
			t.Fatalf("$SRV.INFO.greeter as the printed identity: %v %s", err, msgData(msg))
		}
	})

	t.Run("a service's credentials are its own", func(t *testing.T) {
		// Connecting with a wrong password fails; greeter's credentials
		// cannot take nodegreeter's calls.
		env := map[string]string{}
		for _, kv := range app.creds["greeter"] {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		if nc, err := nats.Connect(app.nats, nats.UserInfo("greeter", env["NATS_PASSWORD"]+"x")); err == nil {
			nc.Close()
			t.Error("connected with a wrong password")
		}
		errs := make(chan error, 1)
		nc, err := nats.Connect(app.nats, nats.UserInfo(env["NATS_USER"], env["NATS_PASSWORD"]),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatalf("connecting with greeter's printed credentials: %v", err)
		}
		defer nc.Close()
		if _, err := nc.QueueSubscribe("fn.nodegreeter.hello", "q", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("subscribing to nodegreeter's calls: %v; want a permissions violation", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("greeter's credentials subscribed to nodegreeter's calls without a permissions violation")
		}
	})

	t.Run("a second instance with flags", func(t *testing.T) {
		env := map[string]string{}
		for _, kv := range app.creds["greeter"] {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		two := startProc(t, "", nil, binary(t, "service"), "-nats", env["NATS_URL"], "-name", "greeter",
			"-user", env["NATS_USER"], "-password", env["NATS_PASSWORD"], "-inbox", env["NATS_INBOX_PREFIX"])
		two.waitLine(t, "ready: service greeter", 30*time.Second)
		// Once one instance has stopped, the other takes the calls.
		if err := two.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
			t.Errorf("second instance after SIGTERM: %v; want exit 0", err)
		}
		if out := strings.Join(two.output(), "\n"); !strings.HasSuffix(out, "stopped") {
			t.Errorf("second instance printed %q; want it to end with stopped", out)
		}
		if res := post(t, base+"/fn/greeter/hello", `{"name":"Ada"}`); res.status != 200 {
			t.Errorf("hello with one instance left: %d %s; want 200", res.status, res.body)
		}
	})

	// Graceful stops: the service, then the app.
	if err := svc.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("service after SIGTERM: %v; want exit 0", err)
	}
	if out := strings.Join(svc.output(), "\n"); !strings.HasSuffix(out, "stopped") {
		t.Errorf("service printed %q; want it to end with stopped", out)
	}
	if res := post(t, base+"/fn/greeter/hello", `{}`); res.status != 503 {
		t.Errorf("hello after the service stopped: %d %s; want 503", res.status, res.body)
	}
	if err := app.proc.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("existingapp after SIGTERM: %v; want exit 0", err)
	}
}

func TestServiceBadConfig(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: the service says so and exits 1.
	p := startProc(t, "", nil, binary(t, "service"), "-nats", "nats://127.0.0.1:1")
	if code := exitCode(p.wait(t, 30*time.Second)); code != 1 {
		t.Errorf("exit code %d; want 1", code)
	}
	if !strings.Contains(p.stderr.String(), "service:") {
		t.Errorf("stderr %q; want the error", p.stderr.String())
	}
}

func msgData(m *nats.Msg) string {
	if m == nil {
		return ""
	}
	return string(m.Data)
}
