// Package browsertest runs tests in a real headless Chromium, driven with
// chromedp. One browser process serves a whole test binary (started on
// first use; call [Main] from TestMain to stop it); each test gets a tab
// in a browser context of its own (its own cookies and storage).
//
// The browser is Debian's chromium: the binary named by FUNCMESH_CHROMIUM,
// else chromium, chromium-browser or google-chrome on PATH. Without one the
// tests skip, saying so, so that go test ./... works with only Go
// installed; .ci/run installs it.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ScreenshotDirEnv names the environment variable that says where
// [Screenshot] writes; unset, it writes into the test's temporary
// directory, removed when the test ends.
const ScreenshotDirEnv = "FUNCMESH_SCREENSHOTS"

var browser struct {
	once    sync.Once
	ctx     context.Context // the browser's; tabs are its children
	cancel  func()
	dataDir string
	err     error
	skip    string
}

// Main runs the tests and then stops the browser, if one was started:
//
//	func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	if browser.dataDir != "" {
		os.RemoveAll(browser.dataDir)
	}
	return code
}

// execPath finds the browser binary.
func execPath() (string, error) {
	if p := os.Getenv("FUNCMESH_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium binary")
}

func start() {
	path, err := execPath()
	if err != nil {
		browser.skip = "no chromium binary (set FUNCMESH_CHROMIUM, or install Debian's chromium: apt-get install -y chromium); browser tests skipped"
		return
	}
	browser.dataDir, browser.err = os.MkdirTemp("", "funcmesh-chromium-")
	if browser.err != nil {
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(browser.dataDir),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 900),
		// Without these the browser reaches out to Google's services,
		// and on a closed network those connections are refused.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	browser.ctx = ctx
	browser.cancel = func() { cancelBrowser(); cancelAlloc() }
	// Running no action starts the browser. Its first run must not have
	// a timeout, which would stop the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		browser.err = fmt.Errorf("browsertest: starting %s: %w", path, err)
	}
}

// Tab is one browser tab of a test.
type Tab struct {
	// Ctx is the tab's chromedp context; run actions with chromedp.Run.
	Ctx context.Context

	mu         sync.Mutex
	exceptions []string
}

// NewTab opens a tab in a fresh browser context, or skips the test when no
// browser is installed. The tab closes at cleanup, and the test fails if
// a script on its pages threw an exception nobody caught.
func NewTab(t *testing.T) *Tab {
	t.Helper()
	browser.once.Do(start)
	if browser.skip != "" {
		t.Skip(browser.skip)
	}
	if browser.err != nil {
		t.Fatal(browser.err)
	}
	tab := &Tab{}
	ctx, cancel := chromedp.NewContext(browser.ctx,
		chromedp.WithNewBrowserContext(),
		chromedp.WithListener(func(ev any) {
			if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
				d := e.ExceptionDetails
				text := d.Text
				if d.Exception != nil && d.Exception.Description != "" {
					text += " " + d.Exception.Description
				}
				tab.mu.Lock()
				tab.exceptions = append(tab.exceptions, fmt.Sprintf("%s (%s:%d)", text, d.URL, d.LineNumber+1))
				tab.mu.Unlock()
			}
		}))
	tab.Ctx = ctx
	// The first run opens the tab; like the browser's, it has no timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browsertest: opening a tab: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		tab.mu.Lock()
		defer tab.mu.Unlock()
		for _, e := range tab.exceptions {
			t.Errorf("uncaught exception in the page: %s", e)
		}
	})
	return tab
}

// Run runs actions in the tab, failing the test if they fail or take
// longer than timeout.
func (tab *Tab) Run(t *testing.T, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// Poll waits until the JavaScript expression is truthy in the page,
// failing the test with what (what was awaited) after timeout.
func (tab *Tab) Poll(t *testing.T, timeout time.Duration, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		// What the page shows says more than the timeout.
		textCtx, cancel := context.WithTimeout(tab.Ctx, 5*time.Second)
		defer cancel()
		text, terr := chromedp.Run(textCtx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if terr != nil {
			text = "(unreadable: " + terr.Error() + ")"
		}
		t.Fatalf("browser: waiting for %s (%s): %v; the page shows:\n%s", what, expr, err, text)
	}
}

// Eval evaluates a JavaScript expression in the tab's page, awaiting it if
// it is a promise, and returns its value decoded from JSON into a T. It
// fails the test if that fails or takes longer than timeout.
func Eval[T any](t *testing.T, tab *Tab, timeout time.Duration, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: evaluating %.80q: %v", expr, err)
	}
	return v
}

// Screenshot captures the whole page as a PNG named name (".png" is added)
// in the screenshot directory and logs where it is.
func (tab *Tab) Screenshot(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv(ScreenshotDirEnv)
	keep := dir != ""
	if !keep {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	ctx, cancel := context.WithTimeout(tab.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browsertest: screenshot: %v", err)
	}
	path := filepath.Join(dir, strings.TrimSuffix(name, ".png")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	if keep {
		t.Logf("screenshot: %s", path)
	} else {
		t.Logf("screenshot: %s (removed after the test; set %s=<dir> to keep it)", path, ScreenshotDirEnv)
	}
	return path
}
