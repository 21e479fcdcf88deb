package authz_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/funcmesh/funcmesh/authz"
)

// webhookServer answers each path the way a webhook might, and records
// what the last request carried.
type webhookServer struct {
	*httptest.Server
	calls atomic.Int64
	body  atomic.Pointer[map[string]any]
	auth  atomic.Pointer[string]
}

func newWebhookServer(t *testing.T, tls bool) *webhookServer {
	w := &webhookServer{}
	mux := http.NewServeMux()
	ack := func(rw http.ResponseWriter, r *http.Request, status int, body string) {
		w.calls.Add(1)
		var m map[string]any
		data, _ := io.ReadAll(r.Body)
		if json.Unmarshal(data, &m) == nil {
			w.body.Store(&m)
		}
		a := r.Header.Get("Authorization")
		w.auth.Store(&a)
		rw.WriteHeader(status)
		io.WriteString(rw, body)
	}
	mux.HandleFunc("POST /ack", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 200, `{"ack": true}`) })
	mux.HandleFunc("POST /created", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 201, `{"ack": true, "note": "x"}`) })
	mux.HandleFunc("POST /nack", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 200, `{"ack": false}`) })
	mux.HandleFunc("POST /yes", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 200, `{"ack": "yes"}`) })
	mux.HandleFunc("POST /text", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 200, `ack: true`) })
	mux.HandleFunc("POST /error", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 500, `{"ack": true}`) })
	mux.HandleFunc("POST /forbidden", func(rw http.ResponseWriter, r *http.Request) { ack(rw, r, 403, `{"ack": true}`) })
	mux.HandleFunc("POST /redirect", func(rw http.ResponseWriter, r *http.Request) {
		w.calls.Add(1)
		http.Redirect(rw, r, "/ack", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("POST /hang", func(rw http.ResponseWriter, r *http.Request) {
		w.calls.Add(1)
		io.ReadAll(r.Body) // so that the server notices the client going away
		<-r.Context().Done()
	})
	if tls {
		w.Server = httptest.NewUnstartedServer(mux)
		w.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
		w.StartTLS()
	} else {
		w.Server = httptest.NewServer(mux)
	}
	t.Cleanup(w.Close)
	return w
}

// webhookDecision evaluates the decision of a config with one webhook rule
// to url, as the module's query with strict built-in errors.
func webhookDecision(t *testing.T, ctx context.Context, url string, input map[string]any) map[string]any {
	t.Helper()
	cfg, err := authz.ParseRules([]byte(`{"services": {"shop": {"functions": {"buy": {"rule": {"rule": "webhook", "url": "` + url + `"}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	src, err := cfg.Rego()
	if err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query(authz.RulesQuery), rego.Module("rules.rego", src), rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil || len(rs) != 1 {
		t.Fatalf("evaluating: %v, %v", rs, err)
	}
	return rs[0].Expressions[0].Value.(map[string]any)
}

// TestWebhookRule calls real webhooks over loopback HTTP: a 2xx answer
// with {"ack": true} allows, every other answer or failure denies.
func TestWebhookRule(t *testing.T) {
	t.Parallel()
	srv := newWebhookServer(t, false)
	tlsSrv := newWebhookServer(t, true)
	in := map[string]any{"service": "shop", "function": "buy", "params": map[string]any{"amount": 5}, "auth": map[string]any{"sub": "u1"}, "token": "t0k3n"}
	tests := []struct {
		name, url string
		allow     bool
	}{
		{"ack", srv.URL + "/ack", true},
		{"201 ack", srv.URL + "/created", true},
		{"ack false", srv.URL + "/nack", false},
		{`ack "yes"`, srv.URL + "/yes", false},
		{"not JSON", srv.URL + "/text", false},
		{"500", srv.URL + "/error", false},
		{"403", srv.URL + "/forbidden", false},
		{"redirect to an ack", srv.URL + "/redirect", false},
		{"not found", srv.URL + "/nothing", false},
		{"connection refused", "http://127.0.0.1:1/ack", false},
		{"https with a certificate not trusted", tlsSrv.URL + "/ack", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := webhookDecision(t, context.Background(), tt.url, in)
			if d["allow"] != tt.allow {
				t.Errorf("decision %v; want allow %v", d, tt.allow)
			}
			if !tt.allow && d["status"] != json.Number("403") {
				t.Errorf("decision %v; want status 403", d)
			}
		})
	}
	body := *srv.body.Load()
	want := map[string]any{"service": "shop", "function": "buy", "params": map[string]any{"amount": 5.0}, "auth": map[string]any{"sub": "u1"}, "token": "t0k3n"}
	if b, _ := json.Marshal(body); string(b) != string(must(json.Marshal(want))) {
		t.Errorf("the webhook got %s; want %s", b, must(json.Marshal(want)))
	}
	if a := *srv.auth.Load(); a != "Bearer t0k3n" {
		t.Errorf("Authorization %q; want the caller's token", a)
	}
	if tlsSrv.calls.Load() != 0 {
		t.Errorf("the https server with an untrusted certificate answered %d calls", tlsSrv.calls.Load())
	}

	// Without a token, nothing is sent in its place.
	calls := srv.calls.Load()
	d := webhookDecision(t, context.Background(), srv.URL+"/ack", map[string]any{"service": "shop", "function": "buy"})
	if d["allow"] != true || srv.calls.Load() != calls+1 {
		t.Fatalf("anonymous call: %v", d)
	}
	if a := *srv.auth.Load(); a != "" {
		t.Errorf("Authorization %q for a call without a token", a)
	}
	if b := *srv.body.Load(); b["auth"] != nil || b["token"] != nil || b["params"] != nil {
		t.Errorf("anonymous call sent %v", b)
	}
}

// TestWebhookRuleTimeout: a webhook that does not answer denies after the
// rule's five seconds.
func TestWebhookRuleTimeout(t *testing.T) {
	t.Parallel()
	srv := newWebhookServer(t, false)
	start := time.Now()
	d := webhookDecision(t, context.Background(), srv.URL+"/hang", map[string]any{"service": "shop", "function": "buy"})
	if el := time.Since(start); el < authz.PolicyCallTimeout-time.Second || el > authz.PolicyCallTimeout+5*time.Second {
		t.Errorf("took %v; want about %v", el, authz.PolicyCallTimeout)
	}
	if d["allow"] != false || d["status"] != json.Number("403") {
		t.Errorf("decision %v; want a denial", d)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
