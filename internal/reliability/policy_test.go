package reliability_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// TestPolicyFailClosed: at the HTTP level, a policy that cannot decide
// denies. A reload that fails (a syntax error, a policy the query finds
// nothing in) keeps the policy in use, so a denial stays a denial; an
// undefined decision, a non-boolean allow and an evaluation error (a
// builtin that fails under strict mode) each deny; and in no case does
// the function run.
func TestPolicyFailClosed(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.rego")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`package funcmesh.authz

default allow := false

allow if {
	input.auth.sub
	input.function != "secret"
}
`)
	var reloads []error
	g := newGateway(t, h.b.Conn(), gatewayConfig{Policy: []authz.Option{
		authz.Files(dir),
		authz.WithReloadHook(func(err error) { reloads = append(reloads, err) }),
	}})
	auth := []string{"Authorization", bearer(h.tok)}
	admin := []string{"Authorization", bearer(token(t, "root", "role", "admin"))}

	type want struct {
		function, body string
		hdr            []string
		status         int
	}
	check := func(stage string, cases ...want) {
		t.Helper()
		before := h.dump.runs.Load()
		allowed := int64(0)
		for _, c := range cases {
			a := g.post("any", c.function, c.body, c.hdr...)
			if a.status != c.status {
				t.Errorf("%s: %s %s: %v; want %d", stage, c.function, c.body, a, c.status)
			}
			if a.status == 200 {
				allowed++
			} else if err := cleanError(a); err != nil {
				t.Errorf("%s: %s: %v", stage, c.function, err)
			}
		}
		if ran := h.dump.runs.Load() - before; ran != allowed {
			t.Errorf("%s: the function ran %d times; want %d, once per allowed call", stage, ran, allowed)
		}
	}
	check("the first policy",
		want{"open", `{}`, auth, 200},
		want{"secret", `{}`, auth, 403},
		want{"secret", `{}`, admin, 403})

	reload := func(src string, wantErr bool) {
		t.Helper()
		write(src)
		err := g.policy.Reload(context.Background())
		if (err != nil) != wantErr {
			t.Fatalf("Reload of %q: %v; want an error: %v", src, err, wantErr)
		}
	}
	// Broken reloads that would allow everything: the old policy stays.
	reload("package funcmesh.authz\n\nallow := true\n\nallow if {{{\n", true)
	check("after a reload with a syntax error",
		want{"open", `{}`, auth, 200},
		want{"secret", `{}`, auth, 403})
	reload("package somewhere.else\n\nallow := true\n", true)
	check("after a reload of a policy the query finds nothing in",
		want{"open", `{}`, auth, 200},
		want{"secret", `{}`, auth, 403})
	reload("package funcmesh.authz\n\nallow if no_such_function(input)\n", true)
	check("after a reload that does not compile",
		want{"open", `{}`, auth, 200},
		want{"secret", `{}`, auth, 403})

	// Undefined: no default, and the rule does not hold.
	reload("package funcmesh.authz\n\nallow if input.auth.role == \"admin\"\n", false)
	check("an undefined decision",
		want{"open", `{}`, auth, 403},
		want{"open", `{}`, admin, 200})

	// allow is not a boolean.
	reload("package funcmesh.authz\n\nallow := \"yes\"\n", false)
	check("a string allow",
		want{"open", `{}`, auth, 500},
		want{"open", `{}`, admin, 500})

	// An evaluation error: to_number of a non-number fails under strict
	// built-in errors, rather than leaving allow undefined.
	reload("package funcmesh.authz\n\ndefault allow := false\n\nallow if to_number(input.params.n) > 1\n", false)
	check("an evaluation error",
		want{"open", `{"n":"5"}`, auth, 200},
		want{"open", `{"n":"five"}`, auth, 500},
		want{"open", `{"n":"five"}`, admin, 500})

	// Two values for allow: a conflict found when evaluating.
	reload("package funcmesh.authz\n\nallow := true if input.auth.sub\n\nallow := false if input.auth.role\n", false)
	check("conflicting decisions",
		want{"open", `{}`, auth, 500},
		want{"open", `{}`, admin, 500})

	// The reload hook saw every reload, failed or not.
	if len(reloads) != 7 || reloads[0] == nil || reloads[1] == nil || reloads[2] == nil || reloads[3] != nil {
		t.Errorf("reload hook got %v; want 3 errors, then 4 successes", reloads)
	}
}
