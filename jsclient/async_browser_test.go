package jsclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/events"
	"github.com/funcmesh/funcmesh/internal/browsertest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

const asyncRules = `{"services": {
  "jobs":    {"functions": {"default": {"rule": {"rule": "authenticated"}}}},
  "events":  {"functions": {"default": {"rule": {"rule": "authenticated"}}}},
  "default": {"functions": {"default": {"rule": {"rule": "deny"}}}}
}}`

// asyncFixture is a mesh with durable calls and events on JetStream,
// their HTTP routes in front of the gateway behind JWT and the policy,
// and a page on another origin that CORS allows.
type asyncFixture struct {
	gateway *httptest.Server
	allowed *httptest.Server
	token   string
	signups chan string // the data of each signup event mail.welcome got
}

func newAsyncFixture(t *testing.T) *asyncFixture {
	t.Helper()
	ctx := t.Context()
	b, err := broker.Start(ctx, broker.WithJetStream(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k1", Secret: []byte("the-host-claims-key-at-least-32-bytes")})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tasks.New(ctx, b.Conn(), tasks.Options{
		Signer:    signer,
		Memory:    true,
		Functions: map[string]tasks.Retry{"jobs.fail": {MaxAttempts: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.New(ctx, q, events.Options{Signer: signer, Memory: true, Triggers: []events.Trigger{
		{Name: "welcome-email", Types: []string{"signup"}, Service: "mail", Function: "welcome"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := mesh.NewClient(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	if err := ev.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Stop)

	f := &asyncFixture{signups: make(chan string, 8)}
	nc, err := b.NewConn("services")
	if err != nil {
		t.Fatal(err)
	}
	for name, fns := range map[string]map[string]mesh.Handler{
		"jobs": {
			"double": mesh.Func(func(_ context.Context, in struct{ N int }) (int, error) { return 2 * in.N, nil }),
			"fail": mesh.Func(func(context.Context, struct{}) (int, error) {
				return 0, transport.NewError(transport.CodeUnprocessable, "no such order")
			}),
		},
		"mail": {"welcome": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			f.signups <- string(c.Params())
			return []byte(`"sent"`), nil
		})},
	} {
		svc, err := mesh.NewService(nc, name)
		if err != nil {
			t.Fatal(err)
		}
		for fn, h := range fns {
			if err := svc.Handle(fn, h); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	}

	f.allowed = httptest.NewServer(nil)
	t.Cleanup(f.allowed.Close)
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: testSecret}},
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(asyncRules)))
	if err != nil {
		t.Fatal(err)
	}
	// Async calls send Prefer (and Idempotency-Key); a page on another
	// origin needs them allowed, and Location exposed.
	cors, err := middleware.CORS(middleware.CORSOptions{
		AllowedOrigins: []string{f.allowed.URL},
		AllowedHeaders: []string{"Authorization", "Content-Type", transport.HeaderXRequestID, transport.HeaderTimeoutMs, "Prefer", "Idempotency-Key"},
		ExposedHeaders: []string{transport.HeaderXRequestID, "Location"},
	})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := mesh.NewGateway(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	authn := alice.New(middleware.RequestID, cors, middleware.JWT(verifier))
	async := &tasks.Handler{Tasks: q, Next: gw, StatusPath: "/tasks/"}
	mux := http.NewServeMux()
	mux.Handle("/fn/{service}/{function}", authn.Append(policy.Middleware).Then(&events.Handler{Events: ev, Next: async}))
	mux.Handle("/tasks/{id}", authn.Then(q.StatusHandler()))
	mux.Handle("/", page(""))
	f.gateway = httptest.NewServer(mux)
	t.Cleanup(f.gateway.Close)
	f.allowed.Config.Handler = page(f.gateway.URL)

	f.token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ada", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type asyncOutcome struct {
	outcome
	TaskID   string `json:"taskId"`
	Accepted string `json:"accepted"`
}

func TestBrowserAsync(t *testing.T) {
	f := newAsyncFixture(t)
	tokenJS := fmt.Sprintf("%q", f.token)
	// attemptAsync runs js with window.accepted set by onAccepted.
	attemptAsync := func(t *testing.T, tab *browsertest.Tab, js string) asyncOutcome {
		t.Helper()
		return browsertest.Eval[asyncOutcome](t, tab, 30*time.Second, `(async () => {
			window.accepted = "";
			const onAccepted = (task) => { window.accepted = task.id; };
			let taskId = "";
			const o = await attempt(async () => { try { return await `+js+`; } catch (e) { taskId = e.taskId ?? ""; throw e; } });
			return {...o, taskId, accepted: window.accepted};
		})()`)
	}

	for _, origin := range []struct{ name, url string }{{"same origin", f.gateway.URL}, {"cross origin", f.allowed.URL}} {
		t.Run(origin.name, func(t *testing.T) {
			tab := open(t, origin.url+"/")
			got := attemptAsync(t, tab, `mesh.callAsync("jobs", "double", {N: 21}, {token: `+tokenJS+`, pollInterval: 20, onAccepted})`)
			if !got.OK || string(got.Value) != "42" || got.Accepted == "" {
				t.Errorf("callAsync jobs.double: %v, accepted %q; want ok 42 and a task ID", got.outcome, got.Accepted)
			}

			got = attemptAsync(t, tab, `mesh.callAsync("jobs", "fail", {}, {token: `+tokenJS+`, pollInterval: 20, onAccepted})`)
			if got.OK || got.Code != "unprocessable" || got.Status != 422 || got.Message != "no such order" || got.TaskID == "" || got.TaskID != got.Accepted {
				t.Errorf("callAsync jobs.fail: %v, task %q accepted %q; want unprocessable 422 with the task's ID", got.outcome, got.TaskID, got.Accepted)
			}

			// Denied by the policy before anything is stored: no task.
			got = attemptAsync(t, tab, `mesh.callAsync("jobs", "double", {N: 1}, {onAccepted})`)
			if got.OK || got.Code != "unauthenticated" || got.Status != 401 || got.Accepted != "" {
				t.Errorf("callAsync without a token: %v, accepted %q; want unauthenticated 401, no task", got.outcome, got.Accepted)
			}

			email := strings.ReplaceAll(origin.name, " ", "-") + "@example.com"
			got = attemptAsync(t, tab, `mesh.emit("signup", {email: `+fmt.Sprintf("%q", email)+`}, {token: `+tokenJS+`})`)
			var id string
			if !got.OK || json.Unmarshal(got.Value, &id) != nil || id == "" {
				t.Fatalf("emit signup: %v; want an event ID", got.outcome)
			}
			select {
			case data := <-f.signups:
				if !strings.Contains(data, email) {
					t.Errorf("mail.welcome got %s; want the event with %s", data, email)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the signup trigger never called mail.welcome")
			}
		})
	}
}
