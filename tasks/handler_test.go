package tasks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/tasks"
)

const httpSecret = "tasks-http-test-secret-0123456789abcdef"

const httpRules = `{"services": {
  "mail": {"functions": {"send": {"rule": {"rule": "authenticated"}}}},
  "default": {"functions": {"default": {"rule": {"rule": "deny"}}}}}}`

func token(t testing.TB, sub string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(httpSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// httpHost mounts the async handler and the status handler as the README
// shows, on a real chain: request ID, JWT, the policy.
func httpHost(t testing.TB, e *env) *httptest.Server {
	t.Helper()
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: []byte(httpSecret)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := authz.New(context.Background(), authz.RulesJSON([]byte(httpRules)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = policy.Close() })
	gw, err := mesh.NewGateway(e.b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	authn := alice.New(middleware.RequestID, middleware.JWT(verifier))
	chain := authn.Append(policy.Middleware)
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", chain.Then(&tasks.Handler{Tasks: e.q, Next: gw, StatusPath: "/tasks/"}))
	mux.Handle("GET /tasks/{id}", authn.Then(e.q.StatusHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func do(t testing.TB, method, url, tok string, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestHTTPAsync(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	var s seen
	service(t, e.b, "mail", map[string]mesh.Handler{
		"send": handlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			s.add(c)
			return []byte(`{"queued":1}`), nil
		}),
	})
	srv := httpHost(t, e)
	alice, bob := token(t, "alice"), token(t, "bob")
	async := map[string]string{"Prefer": "respond-async", "Content-Type": "application/json"}

	resp, body := do(t, "POST", srv.URL+"/fn/mail/send", alice, `{"to":"x"}`, async)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("async call: %d %s %v; want 202 with Preference-Applied", resp.StatusCode, body, resp.Header)
	}
	var acc tasks.Accepted
	if err := json.Unmarshal(body, &acc); err != nil || !tasks.ValidID(acc.ID) || resp.Header.Get("Location") != "/tasks/"+acc.ID || acc.Status != "/tasks/"+acc.ID {
		t.Fatalf("202 body %s, Location %q; want the task ID and its status path", body, resp.Header.Get("Location"))
	}
	waitState(t, e.q, acc.ID, tasks.StateSucceeded, 10*time.Second)

	resp, body = do(t, "GET", srv.URL+"/tasks/"+acc.ID, alice, "", nil)
	var st tasks.Status
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil || st.State != tasks.StateSucceeded || string(st.Result) != `{"queued":1}` {
		t.Fatalf("status for the owner: %d %s; want 200 succeeded with the result", resp.StatusCode, body)
	}
	for name, tok := range map[string]string{"another user": bob, "anonymous": ""} {
		if resp, body := do(t, "GET", srv.URL+"/tasks/"+acc.ID, tok, "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("status for %s: %d %s; want 404", name, resp.StatusCode, body)
		}
	}
	if resp, _ := do(t, "GET", srv.URL+"/tasks/nosuchtask", alice, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("status of a malformed ID: %d; want 404", resp.StatusCode)
	}
	calls := s.all()
	if len(calls) != 1 || calls[0].claims == "" || !strings.Contains(calls[0].claims, `"sub":"alice"`) {
		t.Errorf("calls %+v; want one with alice's claims", calls)
	}

	// Without Prefer the call is synchronous, through the gateway.
	if resp, body := do(t, "POST", srv.URL+"/fn/mail/send", alice, `{}`, nil); resp.StatusCode != 200 || string(body) != `{"queued":1}` {
		t.Errorf("sync call: %d %s; want 200 with the result", resp.StatusCode, body)
	}

	// Idempotency-Key: one task for two requests.
	idem := map[string]string{"Prefer": "respond-async", "Idempotency-Key": "k-1"}
	_, b1 := do(t, "POST", srv.URL+"/fn/mail/send", alice, `{}`, idem)
	_, b2 := do(t, "POST", srv.URL+"/fn/mail/send", alice, `{}`, idem)
	var a1, a2 tasks.Accepted
	_ = json.Unmarshal(b1, &a1)
	_ = json.Unmarshal(b2, &a2)
	if a1.ID == "" || a1.ID != a2.ID || a1.Duplicate || !a2.Duplicate {
		t.Errorf("two requests with one Idempotency-Key: %s, %s; want the same task, the second a duplicate", b1, b2)
	}
}

func TestHTTPAsyncDeniedStoresNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tasks.Options{})
	srv := httpHost(t, e)
	async := map[string]string{"Prefer": "respond-async"}
	for name, c := range map[string]struct{ path, tok string }{
		"anonymous":       {"/fn/mail/send", ""},
		"denied function": {"/fn/admin/wipe", token(t, "alice")},
	} {
		resp, body := do(t, "POST", srv.URL+c.path, c.tok, `{}`, async)
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d %s; want 403", name, resp.StatusCode, body)
		}
	}
	js, _ := jetstream.New(e.b.Conn())
	str, err := js.Stream(context.Background(), tasks.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 || info.State.LastSeq != 0 {
		t.Errorf("after denied async calls the stream holds %d messages (last seq %d); want nothing stored", info.State.Msgs, info.State.LastSeq)
	}
}
