package reqctx_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

func TestRequestID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "abc+/=:._-", "0f8fad5b-d9cb-469f-a165-70867728950e", strings.Repeat("x", reqctx.MaxRequestIDLen)} {
		ctx := reqctx.WithRequestID(context.Background(), id)
		if got, ok := reqctx.RequestID(ctx); !ok || got != id {
			t.Errorf("RequestID after WithRequestID(%q) = %q, %v; want %q, true", id, got, ok, id)
		}
	}
	for _, id := range []string{"", "a b", "a\nb", "a\"b", "é", strings.Repeat("x", reqctx.MaxRequestIDLen+1)} {
		if reqctx.ValidRequestID(id) {
			t.Errorf("ValidRequestID(%q) = true; want false", id)
		}
		ctx := reqctx.WithRequestID(context.Background(), id)
		if got, ok := reqctx.RequestID(ctx); ok {
			t.Errorf("RequestID after WithRequestID(%q) = %q, true; want none", id, got)
		}
	}
}

func TestClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, ok := reqctx.Claims(ctx); ok {
		t.Fatal("Claims of an empty context: ok; want anonymous")
	}
	if _, ok := reqctx.ClaimsJSON(reqctx.WithClaims(ctx, nil, []byte(`{}`))); ok {
		t.Fatal("ClaimsJSON of nil claims: ok; want anonymous")
	}
	c := reqctx.WithClaims(ctx, map[string]any{"sub": "u1"}, nil)
	if m, ok := reqctx.Claims(c); !ok || m["sub"] != "u1" {
		t.Errorf("Claims = %v, %v; want sub u1", m, ok)
	}
	if b, ok := reqctx.ClaimsJSON(c); !ok || string(b) != `{"sub":"u1"}` {
		t.Errorf("ClaimsJSON = %s, %v; want {\"sub\":\"u1\"}", b, ok)
	}
	raw := []byte(`{"sub": "u1"}`)
	if b, _ := reqctx.ClaimsJSON(reqctx.WithClaims(ctx, map[string]any{"sub": "u1"}, raw)); string(b) != string(raw) {
		t.Errorf("ClaimsJSON = %s; want the raw form %s", b, raw)
	}
}

func TestCaller(t *testing.T) {
	t.Parallel()
	if _, ok := reqctx.Caller(context.Background()); ok {
		t.Fatal("Caller of an empty context: ok")
	}
	want := transport.Caller{Service: "a", Function: "f"}
	if got, ok := reqctx.Caller(reqctx.WithCaller(context.Background(), want)); !ok || got != want {
		t.Errorf("Caller = %v, %v; want %v, true", got, ok, want)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	if _, ok := reqctx.Token(context.Background()); ok {
		t.Error("a token in an empty context")
	}
	claims := map[string]any{"sub": "u1"}
	ctx := reqctx.WithTokenClaims(context.Background(), claims, []byte(`{"sub":"u1"}`), "a.b.c")
	if tok, ok := reqctx.Token(ctx); !ok || tok != "a.b.c" {
		t.Errorf("Token = %q, %v; want a.b.c", tok, ok)
	}
	if c, ok := reqctx.Claims(ctx); !ok || c["sub"] != "u1" {
		t.Errorf("Claims = %v, %v", c, ok)
	}
	if raw, ok := reqctx.ClaimsJSON(ctx); !ok || string(raw) != `{"sub":"u1"}` {
		t.Errorf("ClaimsJSON = %s, %v", raw, ok)
	}
	// Claims set again without a token drop the old token.
	if _, ok := reqctx.Token(reqctx.WithClaims(ctx, claims, nil)); ok {
		t.Error("WithClaims kept the token of other claims")
	}
}

func TestEnsureRequestID(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	ctx := reqctx.EnsureRequestID(context.Background(), h)
	id, ok := reqctx.RequestID(ctx)
	if !ok || h.Get(transport.HeaderXRequestID) != id {
		t.Fatalf("a new ID: %q, %v; header %q; want the same ID in both", id, ok, h.Get(transport.HeaderXRequestID))
	}
	if got, _ := reqctx.RequestID(reqctx.EnsureRequestID(ctx, http.Header{})); got != id {
		t.Errorf("a context with an ID got %q; want %q kept", got, id)
	}
	h = http.Header{transport.HeaderXRequestID: {"set-by-proxy"}}
	if got, _ := reqctx.RequestID(reqctx.EnsureRequestID(context.Background(), h)); got != "set-by-proxy" {
		t.Errorf("the response's ID: got %q; want set-by-proxy", got)
	}
	h = http.Header{transport.HeaderXRequestID: {"bad id"}}
	got, _ := reqctx.RequestID(reqctx.EnsureRequestID(context.Background(), h))
	if got == "" || got == "bad id" || h.Get(transport.HeaderXRequestID) != got {
		t.Errorf("an invalid response ID: got %q, header %q; want a new ID in both", got, h.Get(transport.HeaderXRequestID))
	}
}

func TestPolicyCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if reqctx.PolicyCall(ctx) {
		t.Error("an empty context is marked")
	}
	marked := reqctx.WithPolicyCall(reqctx.WithCaller(ctx, transport.PolicyCaller))
	if !reqctx.PolicyCall(marked) {
		t.Error("WithPolicyCall did not mark the context")
	}
	if c, ok := reqctx.Caller(marked); !ok || c != transport.PolicyCaller || c.String() != "authz.policy" {
		t.Errorf("caller %v, %v; want authz.policy", c, ok)
	}
	child, cancel := context.WithCancel(marked)
	defer cancel()
	if !reqctx.PolicyCall(child) {
		t.Error("the mark does not reach a derived context")
	}
}

func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	if n, ok := reqctx.MaxBodyBytes(context.Background()); ok || n != reqctx.DefaultMaxBodyBytes {
		t.Errorf("MaxBodyBytes of an empty context = %d, %v; want %d, false", n, ok, reqctx.DefaultMaxBodyBytes)
	}
	if n, ok := reqctx.MaxBodyBytes(reqctx.WithMaxBodyBytes(context.Background(), 5<<20)); !ok || n != 5<<20 {
		t.Errorf("MaxBodyBytes after WithMaxBodyBytes(5 MiB) = %d, %v; want %d, true", n, ok, 5<<20)
	}
	for _, bad := range []int64{0, -1} {
		if n, ok := reqctx.MaxBodyBytes(reqctx.WithMaxBodyBytes(context.Background(), bad)); ok || n != reqctx.DefaultMaxBodyBytes {
			t.Errorf("MaxBodyBytes after WithMaxBodyBytes(%d) = %d, %v; want the default, false", bad, n, ok)
		}
	}
}
