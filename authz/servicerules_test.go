package authz_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// TestServiceRules: Space Cloud's documentation writes one service's
// config as {"functions": {...}}; it loads as written, one service at a
// time or as a directory of <service>.json, merged with a services
// wrapper, and is decided over HTTP like any config.
func TestServiceRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The documentation's example, as written.
	write("greeter.json", `{"functions": {"func1": {"rule": {"rule": "allow"}}}}`)
	write("payments.json", `{"functions": {
		"charge":  {"rule": {"rule": "authenticated"}},
		"default": {"rule": {"rule": "deny"}}}}`)
	write("notes.txt", "not a config")
	tests := []struct {
		path, claims string
		want         int
	}{
		{"/fn/greeter/func1", "", 200},
		{"/fn/greeter/other", "", 403}, // services.default.functions.default
		{"/fn/payments/charge", `{"sub": "u1"}`, 200},
		{"/fn/payments/charge", "", 401},
		{"/fn/payments/refund", `{"sub": "u1"}`, 403},
		{"/fn/orders/list", `{"sub": "u1", "role": "clerk"}`, 200},
		{"/fn/orders/list", `{"sub": "u1", "role": "guest"}`, 403},
		{"/fn/other/x", `{"sub": "u1"}`, 403},
	}
	a := newAuthorizer(t, authz.RulesDir(dir),
		authz.ServiceRulesJSON("orders", []byte(`{"functions": {"list": {"rule": {"rule": "match", "eval": "==", "type": "string", "f1": "args.auth.role", "f2": "clerk"}}}}`)),
		authz.RulesJSON([]byte(`{"services": {"default": {"functions": {"default": {"rule": {"rule": "deny"}}}}}}`)),
		authz.WithClaims(testClaims))
	srv := serve(t, a)
	for _, tt := range tests {
		got := do(t, srv, call{path: tt.path, body: "{}", claims: tt.claims})
		if got.status != tt.want {
			t.Errorf("%s %s: %d %s; want %d", tt.path, tt.claims, got.status, got.body, tt.want)
		}
	}

	// A bad file in the directory names itself and the place in it.
	write("broken.json", `{"functions": {"f": {"rule": {"rule": "match", "eval": "=~", "f1": 1, "f2": 2}}}}`)
	_, err := authz.New(context.Background(), authz.RulesDir(dir))
	if err == nil || !strings.Contains(err.Error(), "broken.json") || !strings.Contains(err.Error(), `services.broken.functions.f.rule.eval: unknown operator "=~"`) {
		t.Errorf("broken file: %v; want the file and the path in it", err)
	}
	// A file whose name is not a service name is refused.
	os.Remove(filepath.Join(dir, "broken.json"))
	write("bad name.json", `{"functions": {}}`)
	if _, err := authz.New(context.Background(), authz.RulesDir(dir)); err == nil || !strings.Contains(err.Error(), "bad name") {
		t.Errorf("file named %q: %v; want an error naming it", "bad name.json", err)
	}
}

// TestWatchRulesDir: a change to a service's file is loaded.
func TestWatchRulesDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "s.json"), `{"functions": {"default": {"rule": {"rule": "deny"}}}}`)
	r := make(reloads, 100)
	a := newAuthorizer(t, authz.RulesDir(dir), authz.WithWatch(true), authz.WithReloadHook(r.hook))
	if allows(t, a, "x") {
		t.Fatal("deny rule allowed")
	}
	writeFile(t, filepath.Join(dir, "s.json"), `{"functions": {"default": {"rule": {"rule": "allow"}}}}`)
	r.waitFor(t, "the allow rule", func() bool { return allows(t, a, "x") })
}
