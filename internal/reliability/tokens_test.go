package reliability_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// badTokens returns Authorization header lines that must not get a call
// through: tokens that fail verification in every way we could think of.
func badTokens(t testing.TB) map[string][]string {
	t.Helper()
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	admin := jwt.MapClaims{"sub": "admin", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()}
	good := token(t, "u1")
	parts := strings.Split(good, ".")
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","role":"admin"}`))
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + forgedPayload + "."
	return map[string][]string{
		"another key":       {"Authorization: " + bearer(sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-123"), admin))},
		"alg none":          {"Authorization: " + bearer(none)},
		"alg none, no dot":  {"Authorization: " + bearer(strings.TrimSuffix(none, "."))},
		"HS512, same key":   {"Authorization: " + bearer(sign(jwt.SigningMethodHS512, secret, admin))},
		"expired":           {"Authorization: " + bearer(token(t, "u1", "exp", time.Now().Add(-time.Hour).Unix()))},
		"not yet valid":     {"Authorization: " + bearer(token(t, "u1", "nbf", time.Now().Add(time.Hour).Unix()))},
		"payload swapped":   {"Authorization: " + bearer(parts[0]+"."+forgedPayload+"."+parts[2])},
		"signature dropped": {"Authorization: " + bearer(parts[0]+"."+parts[1]+".")},
		"garbage":           {"Authorization: Bearer abc"},
		"three dots":        {"Authorization: Bearer a.b.c"},
		"empty bearer":      {"Authorization: Bearer "},
		"bearer, no token":  {"Authorization: Bearer"},
		"huge":              {"Authorization: " + bearer(strings.Repeat("a", 20<<10))},
		"two headers":       {"Authorization: " + bearer(good), "Authorization: Bearer abc"},
		"two valid headers": {"Authorization: " + bearer(good), "Authorization: " + bearer(token(t, "admin", "role", "admin"))},
	}
}

// TestInvalidTokens: a token that fails verification is answered 401 by
// the JWT middleware, and no call is made: nothing is published on any
// function's subject, and no function runs. An anonymous caller goes on
// to the policy, which refuses it.
func TestInvalidTokens(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	startEcho(t, h.b.ClientURL(), "svc")
	auth := "Authorization: " + bearer(h.tok)
	before := counts(t, h.params, "svc", "Authorization", bearer(h.tok))["echo"]
	h.rec.sync(t)
	for name, hdr := range badTokens(t) {
		for _, g := range []*gateway{h.params, h.plain} {
			for _, target := range []string{"/fn/any/thing", "/fn/svc/echo"} {
				a := g.raw(http.MethodPost, target, []byte(`{}`), hdr...)
				if a.status != 401 || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s to %s: %v, WWW-Authenticate %q; want 401 Bearer", name, target, a, a.header.Get("WWW-Authenticate"))
				}
				if err := cleanError(a); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
	}
	// Anonymous callers reach the policy, which wants a signed-in caller.
	for _, hdr := range [][]string{nil, {"Authorization: Basic dTE6cGFzcw=="}, {"Cookie: token=" + h.tok}} {
		for _, g := range []*gateway{h.params, h.plain} {
			a := g.raw(http.MethodPost, "/fn/svc/echo", []byte(`{}`), hdr...)
			if a.status != 401 && a.status != 403 {
				t.Errorf("anonymous %q: %v; want 401 or 403", hdr, a)
			}
			if err := cleanError(a); err != nil {
				t.Errorf("anonymous %q: %v", hdr, err)
			}
		}
	}
	if got := subjects(h.rec.sync(t)); len(got) != 0 {
		t.Errorf("calls with bad tokens reached %q; want none", got)
	}
	if n := h.dump.runs.Load(); n != 0 {
		t.Errorf("the catch-all function ran %d times; want 0", n)
	}
	if after := counts(t, h.params, "svc", "Authorization", bearer(h.tok))["echo"]; after != before {
		t.Errorf("echo ran %d times during the test; want 0", after-before)
	}
	// The good token still works, so the refusals above were the tokens'.
	if a := h.params.raw(http.MethodPost, "/fn/svc/echo", []byte(`{"ok":1}`), auth); a.status != 200 {
		t.Errorf("valid token: %v", a)
	}
}
