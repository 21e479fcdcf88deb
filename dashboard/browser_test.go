package dashboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/dashboard"
	"github.com/funcmesh/funcmesh/internal/browsertest"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// TestBrowserDashboard opens the dashboard in a real browser and watches
// it refresh itself: a service started during the test appears, and its
// failing function's error count rises.
func TestBrowserDashboard(t *testing.T) {
	tab := browsertest.NewTab(t)
	b, c := newMesh(t)
	mux := http.NewServeMux()
	// Mounted under a path, as a host would, behind its own auth.
	mux.Handle("GET /admin/mesh/", http.StripPrefix("/admin/mesh", newDashboard(t, b.Conn(), 100*time.Millisecond)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	const wait = 15 * time.Second
	waitFor := func(t *testing.T, what, js string) {
		t.Helper()
		tab.Poll(t, wait, what, js)
	}
	text := func(sel string) string {
		return `document.querySelector(` + jsString(sel) + `)?.textContent`
	}

	tab.Run(t, wait, chromedp.Navigate(srv.URL+"/admin/mesh/"))
	waitFor(t, "the empty page", `document.querySelector(".empty") !== null`)

	startAlpha(t, b, "2.1.0")
	waitFor(t, "alpha", `document.querySelector('[data-service="alpha"]') !== null`)

	call(t, c, "ok", 2)
	call(t, c, "boom", 1)
	waitFor(t, "one error", text(`[data-function="alpha.boom"] .errors .count`)+` === "1"`)
	call(t, c, "boom", 2)
	waitFor(t, "three errors", text(`[data-function="alpha.boom"] .errors .count`)+` === "3"`)
	waitFor(t, "two calls", text(`[data-function="alpha.ok"] .calls`)+` === "2"`)

	got := browsertest.Eval[string](t, tab, wait, text(`[data-service="alpha"] .badge + .badge`))
	if got != "v2.1.0" {
		t.Errorf("versions badge %q; want v2.1.0", got)
	}

	// A service's error text is outside input: shown as text, never run.
	nc, err := b.NewConn("legacy")
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := micro.AddService(nc, micro.Config{Name: "legacy", Version: "0.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = legacy.Stop() })
	const attack = `<img src=x onerror="window.pwned=1">`
	err = legacy.AddEndpoint("fail", micro.HandlerFunc(func(r micro.Request) { _ = r.Error("500", attack, nil) }),
		micro.WithEndpointSubject("fn.legacy.fail"))
	if err != nil {
		t.Fatal(err)
	}
	// The subscription is the server's once a round trip has passed.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(t.Context(), "legacy", "fail", nil); transport.CodeOf(err) != transport.CodeInternal {
		t.Fatalf("legacy.fail: %v; want internal", err)
	}
	waitFor(t, "the attack text", `document.querySelector('[data-service="legacy"] .lasterror')?.textContent.includes(`+jsString(attack)+`)`)
	if pwned := browsertest.Eval[bool](t, tab, wait, `window.pwned !== undefined || document.querySelector("main img") !== null`); pwned {
		t.Error("a service's error text became markup in the dashboard")
	}
	tab.Screenshot(t, "dashboard")

	// On a phone: nothing wider than the screen.
	tab.Run(t, wait, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload())
	waitFor(t, "alpha on a phone", `document.querySelector('[data-service="alpha"]') !== null`)
	if over := browsertest.Eval[bool](t, tab, wait, `document.documentElement.scrollWidth > window.innerWidth`); over {
		t.Error("the page is wider than a phone's screen")
	}
	tab.Screenshot(t, "dashboard-phone")
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowserDeadLetters: a durable call that failed for good shows in
// the dashboard, and its Replay button runs it again.
func TestBrowserDeadLetters(t *testing.T) {
	tab := browsertest.NewTab(t)
	b, q, fixed := newTasksMesh(t)
	dash, err := dashboard.New(b.Conn(), dashboard.Options{MinInterval: time.Nanosecond, Refresh: 100 * time.Millisecond, Tasks: q})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/admin/mesh", dash))
	t.Cleanup(srv.Close)

	rc, err := q.Enqueue(t.Context(), tasks.Call{Service: "orders", Function: "ship", Params: []byte(`{"order":7}`)})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 20 * time.Second
	row := `document.querySelector('#dead-letters tr[data-task="` + rc.ID + `"]')`
	tab.Run(t, wait, chromedp.Navigate(srv.URL+"/admin/mesh/"))
	tab.Poll(t, wait, "the dead letter", row+` !== null`)
	if text := browsertest.Eval[string](t, tab, wait, row+`.textContent`); !strings.Contains(text, "orders.ship") || !strings.Contains(text, "warehouse closed") {
		t.Errorf("dead letter row %q; want the function and its error", text)
	}
	tab.Screenshot(t, "dashboard-dead-letters")

	fixed.Store(true)
	// The form's POST redirects to the page: wait for that navigation.
	// The click is the page's own, in one step, since the refresh may
	// swap the row between finding the button and a click by position.
	ctx, cancel := context.WithTimeout(tab.Ctx, wait)
	defer cancel()
	click := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(document.querySelector('#dead-letters tr[data-task="`+rc.ID+`"] button').click(), true)`)(ctx, tg)
		return err
	})
	res, err := chromedp.RunResponse(ctx, click)
	if err != nil || res.Status != 200 {
		t.Fatalf("replay: %v, %v; want the page again", res, err)
	}
	tab.Poll(t, wait, "the replay notice", `document.querySelector("#replayed")?.textContent.includes("`+rc.ID+`")`)
	tab.Poll(t, wait, "the dead letter gone", row+` === null`)
	deadline := time.Now().Add(wait)
	for {
		st, err := q.Status(t.Context(), rc.ID)
		if err == nil && st.State == tasks.StateSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replayed task: %+v, %v; want succeeded", st, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the status with a deadline
	}
}

// TestBrowserSchedules: a schedule shows in the page, and the page's own
// refresh brings in its ticks' outcome.
func TestBrowserSchedules(t *testing.T) {
	tab := browsertest.NewTab(t)
	b, q, fixed := newTasksMesh(t)
	fixed.Store(true)
	sc, err := schedules.New(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.New(b.Conn(), dashboard.Options{MinInterval: time.Nanosecond, Refresh: 100 * time.Millisecond, Schedules: sc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dash)
	t.Cleanup(srv.Close)
	if err := sc.Put(t.Context(), schedules.Schedule{Name: "ship-often", Spec: "@every 1s", Service: "orders", Function: "ship"}); err != nil {
		t.Fatal(err)
	}
	const wait = 20 * time.Second
	row := `document.querySelector('#schedules tr[data-schedule="ship-often"]')`
	tab.Run(t, wait, chromedp.Navigate(srv.URL+"/"))
	tab.Poll(t, wait, "the schedule's last tick", row+`?.querySelector(".last .state")?.textContent === "succeeded"`)
	if text := browsertest.Eval[string](t, tab, wait, row+`.textContent`); !strings.Contains(text, "orders.ship") || !strings.Contains(text, "@every 1s") {
		t.Errorf("schedule row %q; want its function and spec", text)
	}
	tab.Screenshot(t, "dashboard-schedules")
}
