package examples_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/funcmesh/funcmesh/internal/browsertest"
	"github.com/funcmesh/funcmesh/reqctx"
)

// TestWebExample runs the quickstart and the web example as a person
// would, and uses the page in a real browser: on the gateway's origin,
// signed in through the link the quickstart prints, and from the web
// example's own origin, signed in by pasting the token, across CORS.
func TestWebExample(t *testing.T) {
	t.Parallel()
	// The web example first: the quickstart must know its origin for CORS.
	web := startProc(t, "", nil, binary(t, "web"), "-addr", "127.0.0.1:0")
	webURL := find(t, web.waitLine(t, "it calls the gateway", 30*time.Second), `open (http://\S+) in a browser`)
	qs := startProc(t, "", nil, binary(t, "quickstart"), "-addr", "127.0.0.1:0", "-cors-origin", webURL)
	lines := qs.waitLine(t, "Ctrl-C stops everything gracefully.", 30*time.Second)
	base := find(t, lines, `listens on (http://\S+)`)
	token := parsePrinted(t, lines).vars["TOKEN"]
	link := find(t, lines, `^(http://\S+/#token=\S+)$`)
	if link != base+"/#token="+token {
		t.Fatalf("printed link %q; want %s/#token=<the TOKEN printed>", link, base)
	}

	const wait = 20 * time.Second
	// click clicks a button and returns the log entry of the call it made.
	seq := 0
	click := func(t *testing.T, tab *browsertest.Tab, button string) entry {
		t.Helper()
		seq++
		tab.Run(t, wait, chromedp.Click(chromedp.CSS("#"+button)))
		sel := fmt.Sprintf(`#log li[data-seq="%d"][data-done="yes"]`, seq)
		tab.Poll(t, wait, "the result of "+button, fmt.Sprintf("document.querySelector(%q) !== null", sel))
		return browsertest.Eval[entry](t, tab, wait, fmt.Sprintf(`(() => {
			const li = document.querySelector(%q);
			const text = (c) => li.querySelector(c)?.textContent ?? "";
			return {call: li.dataset.call, outcome: li.dataset.outcome, code: li.dataset.code ?? "",
				status: text(".status"), result: text(".result"), message: text(".message"), requestId: text(".request-id")};
		})()`, sel))
	}
	wantOK := func(t *testing.T, e entry, call, contains string) {
		t.Helper()
		if e.Call != call || e.Outcome != "ok" || e.Status != "200 OK" || !strings.Contains(e.Result, contains) {
			t.Errorf("%s: %+v; want 200 OK with %q", call, e, contains)
		}
	}
	wantError := func(t *testing.T, e entry, call, code, status string) {
		t.Helper()
		if e.Call != call || e.Outcome != "error" || e.Code != code || e.Status != status || e.Message == "" {
			t.Errorf("%s: %+v; want %s %s with a message", call, e, status, code)
		}
		if !reqctx.ValidRequestID(e.RequestID) {
			t.Errorf("%s: request ID %q shown; want the gateway's", call, e.RequestID)
		}
	}
	signedIn := func(t *testing.T, tab *browsertest.Tab) {
		t.Helper()
		tab.Poll(t, wait, "signed in", `document.querySelector("#user").dataset.signedIn === "yes"`)
		user := browsertest.Eval[string](t, tab, wait, `document.querySelector("#user").textContent`)
		if !strings.HasPrefix(user, "Signed in as ada (Ada Lovelace)") {
			t.Errorf("user line %q; want Signed in as ada (Ada Lovelace) ...", user)
		}
	}

	t.Run("same origin", func(t *testing.T) {
		tab := browsertest.NewTab(t)
		seq = 0
		tab.Run(t, wait, chromedp.Navigate(link), chromedp.WaitReady(chromedp.CSS(`body[data-ready="yes"]`)))
		signedIn(t, tab)
		if hash := browsertest.Eval[string](t, tab, wait, `location.hash`); hash != "" {
			t.Errorf("the token stayed in the URL: %q", hash)
		}
		wantOK(t, click(t, tab, "call-hello"), "greeter.hello", `"greeting": "Hello, Ada!"`)
		// Results are outside input: shown as text, never run.
		tab.Run(t, wait, chromedp.SetValue(chromedp.CSS("#name"), `<img src=x onerror="window.pwned=1">`))
		wantOK(t, click(t, tab, "call-hello"), "greeter.hello", `Hello, <img src=x onerror=\"window.pwned=1\">!`)
		if pwned := browsertest.Eval[bool](t, tab, wait, `window.pwned !== undefined || document.querySelector("#log img") !== null`); pwned {
			t.Error("a result became markup in the page")
		}
		tab.Run(t, wait, chromedp.SetValue(chromedp.CSS("#name"), "Ada"))
		wantOK(t, click(t, tab, "call-welcome"), "greeter.welcome", "Welcome back, Ada Lovelace!")
		wantOK(t, click(t, tab, "call-profile"), "accounts.profile", `"name": "Ada Lovelace"`)
		tab.Run(t, wait, chromedp.SetValue(chromedp.CSS("#profile-user"), "grace"))
		wantError(t, click(t, tab, "call-profile"), "accounts.profile", "permission_denied", "403")
		wantError(t, click(t, tab, "call-invoices"), "billing.invoices", "unavailable", "503")
		tab.Screenshot(t, "web-example")

		tab.Run(t, wait, chromedp.Click(chromedp.CSS("#signout-button")))
		wantError(t, click(t, tab, "call-me"), "accounts.me", "unauthenticated", "401")
	})

	t.Run("cross origin", func(t *testing.T) {
		tab := browsertest.NewTab(t)
		seq = 0
		tab.Run(t, wait,
			chromedp.Navigate(webURL),
			chromedp.WaitReady(chromedp.CSS(`body[data-ready="yes"]`)),
			chromedp.SetValue(chromedp.CSS("#gateway"), base),
			// Pasted as the quickstart prints it, with TOKEN='...' around.
			chromedp.SetValue(chromedp.CSS("#token"), "TOKEN='"+token+"'"),
			chromedp.Click(chromedp.CSS("#signin-button")))
		signedIn(t, tab)
		wantOK(t, click(t, tab, "call-me"), "accounts.me", `"user": "ada"`)
		// The timeout header must pass the CORS preflight too.
		tab.Run(t, wait, chromedp.SetValue(chromedp.CSS("#timeout"), "5000"), chromedp.SetValue(chromedp.CSS("#profile-user"), "grace"))
		wantError(t, click(t, tab, "call-profile"), "accounts.profile", "permission_denied", "403")
		wantOK(t, click(t, tab, "call-welcome"), "greeter.welcome", "Welcome back, Ada Lovelace!")
		where := browsertest.Eval[string](t, tab, wait, `document.querySelector("#where").textContent`)
		if !strings.Contains(where, "another origin") {
			t.Errorf("the page says %q; want it to say the gateway is on another origin", where)
		}
		tab.Screenshot(t, "web-example-cross-origin")
	})
}

// entry is one call in the page's log.
type entry struct {
	Call      string `json:"call"`
	Outcome   string `json:"outcome"`
	Code      string `json:"code"`
	Status    string `json:"status"`
	Result    string `json:"result"`
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
}
