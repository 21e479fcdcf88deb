package spacecloud_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/spacecloud"
	"github.com/funcmesh/funcmesh/transport"
)

const (
	testProject = "todo-app"
	testOrigin  = "https://app.example.com"
	gatewayMax  = 20 * time.Second
)

var testSecret = []byte("spacecloud-test-secret-of-32-bytes-at-least")

// testRules is the rule config of the test host, as a Space Cloud user
// would have written it.
const testRules = `{
  "services": {
    "greeter": {"functions": {
      "hello":    {"rule": {"rule": "allow"}},
      "whoami":   {"rule": {"rule": "authenticated"}},
      "charge":   {"rule": {"rule": "match", "type": "number", "eval": "<=", "f1": "args.params.amount", "f2": 100}},
      "own":      {"rule": {"rule": "match", "type": "number", "eval": "==", "f1": "args.params.user", "f2": "args.auth.id"}},
      "secret":   {"rule": {"rule": "deny"}},
      "default":  {"rule": {"rule": "allow"}}
    }},
    "nodegreeter": {"functions": {
      "whoami":   {"rule": {"rule": "authenticated"}},
      "default":  {"rule": {"rule": "allow"}}
    }},
    "default": {"functions": {"default": {"rule": {"rule": "allow"}}}}
  }
}`

// host is an app with the native route and the Space Cloud endpoint on
// one chain, over a real broker and real HTTP.
type host struct {
	srv   *server.Server
	http  *httptest.Server
	calls chan string // service.function of every call greeter served
}

// newHost starts a broker, the greeter service (in Go) and the host's
// HTTP server; project, when not empty, is the only project it serves.
func newHost(t *testing.T, project string) *host {
	t.Helper()
	ctx := context.Background()
	h := &host{srv: natstest.Start(t, nil), calls: make(chan string, 100)}

	svc, err := mesh.NewService(natstest.Connect(t, h.srv), "greeter")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	handle := func(name string, f mesh.Handler) {
		t.Helper()
		if err := svc.Handle(name, mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			h.calls <- "greeter." + name
			return f.ServeCall(ctx, c)
		})); err != nil {
			t.Fatal(err)
		}
	}
	type helloIn struct {
		Name string `json:"name"`
	}
	type greeting struct {
		Greeting string `json:"greeting"`
		From     string `json:"from"`
	}
	handle("hello", mesh.Func(func(_ context.Context, in helloIn) (greeting, error) {
		if in.Name == "" {
			in.Name = "world"
		}
		return greeting{Greeting: "Hello, " + in.Name + "!", From: "go"}, nil
	}))
	handle("whoami", mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		claims, _ := c.ClaimsJSON()
		if claims == nil {
			claims = []byte("null")
		}
		return json.Marshal(map[string]any{"claims": json.RawMessage(claims), "requestId": c.RequestID()})
	}))
	handle("charge", mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		return append([]byte(`{"charged":`), append(c.Params(), '}')...), nil
	}))
	handle("own", mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		return []byte(`"yours"`), nil
	}))
	handle("echo", mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		return json.Marshal(map[string]any{"params": string(c.Params()), "contentType": c.ContentType()})
	}))
	handle("deadline", mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		return json.Marshal(time.Until(c.Deadline()).Milliseconds())
	}))
	handle("slow", mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	handle("conflict", mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
		return nil, transport.ErrorWithStatus(http.StatusConflict, "the todo was changed meanwhile")
	}))
	handle("broken", mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
		return nil, errors.New("database password is hunter2")
	}))
	handle("text", mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
		c.SetReplyContentType("text/plain; charset=utf-8")
		return []byte(`plain "text"`), nil
	}))

	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys:           []middleware.JWTKey{{Algorithm: "HS256", Key: testSecret}},
		Cookie:         "session",
		TrustedOrigins: []string{testOrigin},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = verifier.Close() })
	policy, err := authz.New(ctx, authz.RulesJSON([]byte(testRules)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = policy.Close() })
	cors, err := middleware.CORS(middleware.CORSOptions{AllowedOrigins: []string{testOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := mesh.NewGateway(natstest.Connect(t, h.srv), mesh.WithTimeout(gatewayMax))
	if err != nil {
		t.Fatal(err)
	}

	native := alice.New(
		middleware.RequestID,
		cors,
		middleware.JWT(verifier),
		policy.Middleware,
	).Then(gw)
	sc := &spacecloud.Handler{Next: native, Project: project}
	mux := http.NewServeMux()
	mux.Handle("/fn/{service}/{function}", native)
	mux.Handle(spacecloud.Pattern, sc)
	mux.Handle(spacecloud.LegacyPattern, sc)
	h.http = httptest.NewServer(mux)
	t.Cleanup(h.http.Close)
	return h
}

// token signs claims with the host's secret.
func token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// answer is a Space Cloud answer body.
type answer struct {
	Result json.RawMessage `json:"result"`
	Error  *string         `json:"error"`
}

// answer decodes the body as Space Cloud's {"result"} or {"error"}; it
// fails the test for anything else.
func (r response) answer(t *testing.T) answer {
	t.Helper()
	var a answer
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("answer %d %s: not Space Cloud's shape: %v", r.status, r.body, err)
	}
	if (a.Error != nil) == (a.Result != nil) {
		t.Fatalf("answer %d %s: want exactly one of result and error", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer %d: Content-Type %q; want application/json", r.status, ct)
	}
	return a
}

// do sends a request to the host and reads the response; hdr are
// name/value pairs.
func (h *host) do(t *testing.T, method, path, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// call posts a Space Cloud envelope to the current path.
func (h *host) call(t *testing.T, service, function, envelope string, hdr ...string) response {
	t.Helper()
	return h.do(t, http.MethodPost, "/v1/api/"+testProject+"/services/"+service+"/"+function, envelope, hdr...)
}

// served returns the calls greeter served since the last look.
func (h *host) served() []string {
	var got []string
	for {
		select {
		case c := <-h.calls:
			got = append(got, c)
		default:
			return got
		}
	}
}
