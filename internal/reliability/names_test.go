package reliability_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Who answers a hostile request.
const (
	byChain = "chain" // the handler chain: a JSON error body with the request ID
	byMux   = "mux"   // net/http's ServeMux, before the chain: plain text, no request ID
	byHTTP  = "http"  // net/http's server, before any handler: plain text
)

// nameCases are request targets with hostile service and function names,
// what each is answered with, and the one subject it may reach ("" for
// none). The mux decodes each path segment once (%2E is "."), so every
// character a subject must not hold arrives in the names, where the
// check refuses it; the mux itself redirects paths that are not clean
// ("//", "/./", "/../": 307 to the clean path, which then does not match)
// and answers 404 for paths with too few or too many segments.
var nameCases = []struct {
	target  string
	status  int
	by      string
	subject string
}{
	{"/fn/any/thing", 200, byChain, "fn.any.thing"},
	{"/fn/any/thing?x=.*>&fn=a.b", 200, byChain, "fn.any.thing"},
	{"/fn/an%79/th%69ng", 200, byChain, "fn.any.thing"}, // escaped letters are the same names
	{"/fn/Any-1/thing_2", 200, byChain, "fn.Any-1.thing_2"},
	{"http://elsewhere/fn/any/thing", 200, byChain, "fn.any.thing"}, // absolute form: the path counts
	{"/fn/" + strings.Repeat("a", 64) + "/thing", 200, byChain, "fn." + strings.Repeat("a", 64) + ".thing"},

	// Too long.
	{"/fn/" + strings.Repeat("a", 65) + "/thing", 400, byChain, ""},
	{"/fn/any/" + strings.Repeat("b", 65), 400, byChain, ""},
	{"/fn/" + strings.Repeat("a", 10000) + "/thing", 400, byChain, ""},
	// Dots and wildcards, plain and percent-encoded.
	{"/fn/a.b/thing", 400, byChain, ""},
	{"/fn/any/a.b", 400, byChain, ""},
	{"/fn/a.b.c/d", 400, byChain, ""},
	{"/fn/%2E/thing", 400, byChain, ""},
	{"/fn/%2e%2e/thing", 400, byChain, ""},
	{"/fn/a%2Eb/thing", 400, byChain, ""},
	{"/fn/any/%2E", 400, byChain, ""},
	{"/fn/any/%2E%2E", 400, byChain, ""},
	{"/fn/*/thing", 400, byChain, ""},
	{"/fn/%2A/thing", 400, byChain, ""},
	{"/fn/any/*", 400, byChain, ""},
	{"/fn/any/%2a", 400, byChain, ""},
	{"/fn/>/thing", 400, byChain, ""},
	{"/fn/%3E/thing", 400, byChain, ""},
	{"/fn/any/%3e", 400, byChain, ""},
	{"/fn/any/a%3E", 400, byChain, ""},
	// Slashes inside a segment.
	{"/fn/a%2Fb/thing", 400, byChain, ""},
	{"/fn/%2F/thing", 404, byMux, ""}, // a segment that is only a slash does not match
	{"/fn/any/..%2F..%2Fx", 400, byChain, ""},
	// Whitespace and control characters.
	{"/fn/%20/thing", 400, byChain, ""},
	{"/fn/a%20b/thing", 400, byChain, ""},
	{"/fn/any%20/thing", 400, byChain, ""},
	{"/fn/a%09b/thing", 400, byChain, ""},
	{"/fn/a%00b/thing", 400, byChain, ""},
	{"/fn/a%0Ab/thing", 400, byChain, ""},
	{"/fn/a%0D%0AMesh-Auth:%20x/thing", 400, byChain, ""},
	{"/fn/a%7Fb/thing", 400, byChain, ""},
	{"/fn/a%C2%A0b/thing", 400, byChain, ""}, // no-break space
	// Unicode look-alikes.
	{"/fn/%EF%BD%81ny/thing", 400, byChain, ""},  // fullwidth a
	{"/fn/%D0%B0ny/thing", 400, byChain, ""},     // Cyrillic а
	{"/fn/an%E2%80%8By/thing", 400, byChain, ""}, // zero-width space
	{"/fn/a%E2%80%A4b/thing", 400, byChain, ""},  // one dot leader
	{"/fn/a%EF%BC%8Eb/thing", 400, byChain, ""},  // fullwidth full stop
	{"/fn/%EF%BC%9E/thing", 400, byChain, ""},    // fullwidth >
	{"/fn/%E2%88%97/thing", 400, byChain, ""},    // asterisk operator
	{"/fn/any/thin%C9%A1", 400, byChain, ""},     // Latin script g
	{"/fn/a%FFb/thing", 400, byChain, ""},        // not UTF-8
	{"/fn/%C0%AE/thing", 400, byChain, ""},       // overlong "."
	// Double encoding: decoded once, the % stays, and is refused.
	{"/fn/%252E/thing", 400, byChain, ""},
	{"/fn/%252A/thing", 400, byChain, ""},
	{"/fn/%253E/thing", 400, byChain, ""},
	{"/fn/a%252Eb/thing", 400, byChain, ""},
	{"/fn/%25/thing", 400, byChain, ""},
	// A fragment is not sent by browsers; sent anyway, it is part of the name.
	{"/fn/any/thing#x", 400, byChain, ""},
	{"/fn/any/thing%23x", 400, byChain, ""},

	// Paths the pattern does not match.
	{"/fn/any", 404, byMux, ""},
	{"/fn/any/", 404, byMux, ""},
	{"/fn/any/thing/more", 404, byMux, ""},
	{"/fn/any/thing/", 404, byMux, ""},
	{"/FN/any/thing", 404, byMux, ""},
	// Paths that are not clean: redirected to the clean path.
	{"/fn//thing", 307, byMux, ""},
	{"/fn/./thing", 307, byMux, ""},
	{"/fn/../thing", 307, byMux, ""},
	{"//fn/any/thing", 307, byMux, ""},
	{"/fn/any/.", 307, byMux, ""},
	{"/fn/any/..", 307, byMux, ""},
	// Request lines net/http does not parse.
	{"/fn/a b/thing", 400, byHTTP, ""},
	{"/fn/a\tb/thing", 400, byHTTP, ""},
	{"/fn/a\x00b/thing", 400, byHTTP, ""},
	{"/fn/a\x7fb/thing", 400, byHTTP, ""},
}

// TestHostileNames sends every name case through the whole chain and
// through the gateway alone, and checks the answer and, with a
// subscription to ">" on the broker, every subject the request reached.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	for _, g := range []struct {
		name string
		g    *gateway
	}{{"chain", h.params}, {"gateway alone", h.bare}} {
		for _, tc := range nameCases {
			a := g.g.raw(http.MethodPost, tc.target, []byte(`{}`), "Authorization: "+bearer(h.tok))
			got := subjects(h.rec.sync(t))
			want := []string{}
			if tc.subject != "" {
				want = []string{tc.subject}
			}
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("%s: %q reached subjects %q; want %q", g.name, tc.target, got, want)
			}
			if a.err != nil || a.status != tc.status {
				t.Errorf("%s: %q: %v; want %d", g.name, tc.target, a, tc.status)
				continue
			}
			switch tc.by {
			case byChain:
				if a.status == 200 {
					if d, err := decodeDump(a); err != nil || d.Subject != tc.subject {
						t.Errorf("%s: %q answered %s; want the function on %s", g.name, tc.target, a.body, tc.subject)
					}
				} else if err := cleanError(a); err != nil {
					t.Errorf("%s: %q: %v", g.name, tc.target, err)
				}
			default:
				if a.header.Get("X-Request-Id") != "" {
					t.Errorf("%s: %q answered by the chain (%v); want %s to answer before it", g.name, tc.target, a, tc.by)
				}
			}
		}
	}
	if n := h.dump.runs.Load(); n != 2*6 {
		t.Errorf("the function ran %d times; want %d", n, 2*6)
	}
}

// TestMethods: the route has no method (CORS needs OPTIONS to reach the
// chain), so the gateway itself answers 405 to every method but POST,
// without making the call.
func TestMethods(t *testing.T) {
	t.Parallel()
	h := newHostile(t)
	for _, g := range []*gateway{h.params, h.bare} {
		for _, m := range []string{"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"} {
			a := g.raw(m, "/fn/any/thing", nil, "Authorization: "+bearer(h.tok))
			if a.status != 405 || a.header.Get("Allow") != "POST" {
				t.Errorf("%s: %v, Allow %q; want 405, Allow POST", m, a, a.header.Get("Allow"))
			}
			if m != "HEAD" {
				if err := cleanError(a); err != nil {
					t.Errorf("%s: %v", m, err)
				}
			}
			if got := subjects(h.rec.sync(t)); len(got) != 0 {
				t.Errorf("%s reached %q; want no call", m, got)
			}
		}
	}
	if n := h.dump.runs.Load(); n != 0 {
		t.Errorf("the function ran %d times; want 0", n)
	}
}
