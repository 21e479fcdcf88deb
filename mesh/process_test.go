package mesh_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/internal/meshtest"
	"github.com/funcmesh/funcmesh/mesh"
)

func TestMain(m *testing.M) {
	code := m.Run()
	meshtest.Cleanup()
	os.Exit(code)
}

func TestServiceInSeparateProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	p := meshtest.Start(t, e.srv.ClientURL(), "-name", "remote")

	if res := e.post(t, "remote", "echo", `{"hello":"world"}`); res.status != 200 || string(res.body) != `{"hello":"world"}` {
		t.Fatalf("echo: %d %s", res.status, res.body)
	}
	res := e.post(t, "remote", "whoami", `{}`, "X-Unused", "1")
	var who struct {
		PID       int    `json:"pid"`
		ID        string `json:"id"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(res.body, &who); err != nil || res.status != 200 {
		t.Fatalf("whoami: %d %s", res.status, res.body)
	}
	if who.PID != p.Cmd.Process.Pid || who.PID == os.Getpid() || who.ID != p.ID {
		t.Errorf("whoami answered from pid %d id %s; want the child's %d %s", who.PID, who.ID, p.Cmd.Process.Pid, p.ID)
	}
	if who.RequestID == "" || who.RequestID != res.header.Get("X-Request-Id") {
		t.Errorf("request ID %q; want the response's %q", who.RequestID, res.header.Get("X-Request-Id"))
	}
	if res := e.post(t, "remote", "fail", `{"status":422}`); res.status != 422 || res.errMessage() != "failed as asked" {
		t.Errorf("fail: %d %s", res.status, res.body)
	}
	if res := e.post(t, "remote", "nope", `{}`); res.status != 404 {
		t.Errorf("missing function: %d %s; want 404", res.status, res.body)
	}
	d, _ := mesh.NewDiscovery(e.nc)
	eventually(t, "discovery to list the process's functions", func() bool {
		list, err := d.Services(context.Background())
		return err == nil && len(list) == 1 && slices.Equal(list[0].Functions, []string{"call", "echo", "fail", "sleep", "whoami"})
	})

	// A call in flight when SIGTERM arrives still completes.
	done := make(chan response, 1)
	go func() {
		req := `{"ms":300}`
		b, err := e.client.Invoke(context.Background(), "remote", "sleep", []byte(req))
		if err != nil {
			done <- response{status: 0, body: []byte(err.Error())}
			return
		}
		done <- response{status: 200, body: b}
	}()
	eventually(t, "the sleep call to be in flight", func() bool {
		m, err := e.nc.Request("$SRV.STATS.remote", nil, time.Second)
		if err != nil {
			return false
		}
		var st struct {
			Endpoints []struct{ Data mesh.EndpointStats }
		}
		return json.Unmarshal(m.Data, &st) == nil && len(st.Endpoints) > 0 && st.Endpoints[0].Data.InFlight > 0
	})
	if err := p.Terminate(); err != nil {
		t.Fatalf("SIGTERM: exit %v; want a clean exit", err)
	}
	if r := <-done; r.status != 200 || string(r.body) != `{"slept":300}` {
		t.Errorf("call in flight at SIGTERM: %d %s", r.status, r.body)
	}
	if lines := p.Lines(); !slices.Contains(lines, "stopped") {
		t.Errorf("output after ready: %q", lines)
	}
	if res := e.post(t, "remote", "echo", `{}`); res.status != 503 {
		t.Errorf("after stop: %d %s; want 503", res.status, res.body)
	}
}
