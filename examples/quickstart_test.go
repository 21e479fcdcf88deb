package examples_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestQuickstart(t *testing.T) {
	t.Parallel()
	p := startProc(t, "", nil, binary(t, "quickstart"), "-addr", "127.0.0.1:0", "-store", t.TempDir())
	lines := p.waitLine(t, "Ctrl-C stops everything gracefully.", 30*time.Second)
	base := find(t, lines, `listens on (http://\S+)`)
	if u, err := url.Parse(base); err != nil || u.Port() == "" || u.Port() == "0" {
		t.Fatalf("printed address %q; want http://127.0.0.1:<the port picked>", base)
	}
	pr := parsePrinted(t, lines)
	token := pr.vars["TOKEN"]
	if token == "" {
		t.Fatal("no TOKEN printed")
	}

	t.Run("printed commands", func(t *testing.T) {
		seen := map[int]bool{}
		for _, c := range pr.curls {
			seen[c.want] = true
		}
		for _, status := range []int{200, 401, 403, 503} {
			if !seen[status] {
				t.Errorf("no printed command shows a %d", status)
			}
		}
		runCurls(t, pr)
	})

	t.Run("typed function", func(t *testing.T) {
		res := post(t, base+"/fn/greeter/hello", `{"name":"Grace"}`)
		if res.status != 200 || string(res.body) != `{"greeting":"Hello, Grace!"}` {
			t.Errorf("hello: %d %s; want 200 {\"greeting\":\"Hello, Grace!\"}", res.status, res.body)
		}
		if res := post(t, base+"/fn/greeter/hello", `{"name":42}`); res.status != 400 {
			t.Errorf("hello with a number for a name: %d %s; want 400", res.status, res.body)
		}
	})

	t.Run("nested call carries claims and request ID", func(t *testing.T) {
		res := post(t, base+"/fn/greeter/welcome", ``, "Authorization", "Bearer "+token, "X-Request-Id", "quickstart-test-1")
		if res.status != 200 {
			t.Fatalf("welcome: %d %s; want 200", res.status, res.body)
		}
		var got struct {
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
			You       struct {
				User, Name, Role, Caller string
				RequestID                string `json:"request_id"`
			} `json:"you"`
		}
		if err := json.Unmarshal(res.body, &got); err != nil {
			t.Fatalf("welcome: %v in %s", err, res.body)
		}
		if got.You.User != "ada" || got.You.Role != "user" || got.You.Caller != "greeter.welcome" {
			t.Errorf("accounts.me saw user %q role %q caller %q; want ada, user, greeter.welcome", got.You.User, got.You.Role, got.You.Caller)
		}
		if got.RequestID != "quickstart-test-1" || got.You.RequestID != "quickstart-test-1" {
			t.Errorf("request IDs %q (welcome), %q (me); want quickstart-test-1 both", got.RequestID, got.You.RequestID)
		}
		if got.Message != "Welcome back, Ada Lovelace!" {
			t.Errorf("message %q", got.Message)
		}
	})

	t.Run("statuses", func(t *testing.T) {
		bearer := "Bearer " + token
		for _, tt := range []struct {
			name, path, body, auth string
			want                   int
			code                   string
		}{
			{"own profile", "/fn/accounts/profile", `{"user":"ada"}`, bearer, 200, ""},
			{"someone else's profile (Rego)", "/fn/accounts/profile", `{"user":"grace"}`, bearer, 403, "permission_denied"},
			{"no token (rules)", "/fn/accounts/me", ``, "", 401, "unauthenticated"},
			{"bad token", "/fn/greeter/hello", `{}`, "Bearer not-a-token", 401, "unauthenticated"},
			{"welcome without a token", "/fn/greeter/welcome", ``, "", 401, "unauthenticated"},
			{"unknown service (rules default)", "/fn/payroll/run", ``, bearer, 403, "permission_denied"},
			{"greeter's default rule", "/fn/greeter/other", ``, bearer, 403, "permission_denied"},
			{"declared, not running", "/fn/billing/invoices", ``, bearer, 503, "unavailable"},
			{"running, no such function", "/fn/accounts/nothing", ``, bearer, 404, "not_found"},
			{"another user, unknown (Rego)", "/fn/accounts/profile", `{"user":"nobody"}`, bearer, 403, "permission_denied"},
			{"params not JSON", "/fn/greeter/hello", `{`, "", 400, "invalid_argument"},
			{"over the body limit", "/fn/greeter/hello", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, "", 413, "too_large"},
		} {
			res := post(t, base+tt.path, tt.body, "Authorization", tt.auth)
			if res.status != tt.want {
				t.Errorf("%s: %d %s; want %d", tt.name, res.status, res.body, tt.want)
				continue
			}
			if tt.code == "" {
				continue
			}
			var e struct {
				Error struct{ Code, RequestID string } `json:"error"`
			}
			if err := json.Unmarshal(res.body, &e); err != nil || e.Error.Code != tt.code {
				t.Errorf("%s: body %s; want error code %s", tt.name, res.body, tt.code)
			}
		}
	})

	t.Run("methods and CORS", func(t *testing.T) {
		if res := get(t, base+"/fn/greeter/hello"); res.status != http.StatusMethodNotAllowed {
			t.Errorf("GET a function: %d %s; want 405", res.status, res.body)
		}
		req, _ := http.NewRequest(http.MethodOptions, base+"/fn/greeter/hello", nil)
		req.Header.Set("Origin", "http://localhost:3000")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res := do(t, req)
		if res.status != http.StatusNoContent || res.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
			t.Errorf("preflight: %d, Access-Control-Allow-Origin %q; want 204 and the origin", res.status, res.header.Get("Access-Control-Allow-Origin"))
		}
	})

	t.Run("Space Cloud endpoint", func(t *testing.T) {
		res := post(t, base+"/v1/api/quickstart/services/greeter/hello", `{"params":{"name":"Grace"},"timeout":5}`)
		if res.status != 200 || string(res.body) != `{"result":{"greeting":"Hello, Grace!"}}`+"\n" {
			t.Errorf("Space Cloud hello: %d %s; want 200 {\"result\":{\"greeting\":\"Hello, Grace!\"}}", res.status, res.body)
		}
		if res := post(t, base+"/v1/api/quickstart/functions/accounts/me", `{}`); res.status != 401 || string(res.body) != `{"error":"authentication required"}`+"\n" {
			t.Errorf("Space Cloud accounts.me without a token: %d %s; want 401 {\"error\":\"authentication required\"}", res.status, res.body)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		res := get(t, base+"/fn")
		var got struct {
			Services []struct {
				Name      string
				Functions []string
			}
		}
		if err := json.Unmarshal(res.body, &got); res.status != 200 || err != nil {
			t.Fatalf("GET /fn: %d %s (%v)", res.status, res.body, err)
		}
		fns := map[string]string{}
		for _, s := range got.Services {
			fns[s.Name] = strings.Join(s.Functions, ",")
		}
		if fns["greeter"] != "hello,welcome" || fns["accounts"] != "me,profile" || fns["mail"] != "welcome" || len(fns) != 3 {
			t.Errorf("GET /fn listed %v; want greeter: hello,welcome, accounts: me,profile and mail: welcome", fns)
		}
	})

	t.Run("async call", func(t *testing.T) {
		bearer := "Bearer " + token
		res := post(t, base+"/fn/mail/welcome", `{"email":"ada@example.com"}`, "Authorization", bearer, "Prefer", "respond-async")
		loc := res.header.Get("Location")
		if res.status != 202 || loc == "" {
			t.Fatalf("async call: %d %s; want 202 with a Location", res.status, res.body)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodGet, base+loc, nil)
			req.Header.Set("Authorization", bearer)
			st := do(t, req)
			if st.status == 200 && strings.Contains(string(st.body), `"state":"succeeded"`) {
				if !strings.Contains(string(st.body), `"sent_to":"ada@example.com"`) {
					t.Errorf("status %s; want the result", st.body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %d %s after 10s; want succeeded", st.status, st.body)
			}
			time.Sleep(50 * time.Millisecond) // poll interval; the deadline is above
		}
		if res := get(t, base+loc); res.status != 404 {
			t.Errorf("status without the token: %d; want 404", res.status)
		}
	})

	if err := p.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("quickstart after SIGTERM: %v; want exit 0", err)
	}
	if !strings.Contains(p.stderr.String(), "shutting down") {
		t.Errorf("stderr does not say it shut down:\n%s", p.stderr.String())
	}
}
