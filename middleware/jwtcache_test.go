package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/golang-jwt/jwt/v5"
)

// sameMap reports whether a and b are the same map, not merely equal ones.
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func mustVerify(t *testing.T, v *middleware.JWTVerifier, tok string) map[string]any {
	t.Helper()
	c, _, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestJWTCache(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Leeway: -1})
	middleware.SetJWTClock(v, clock)

	exp := clock().Add(time.Minute)
	tok := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "u1", "exp": exp.Unix()})
	first := mustVerify(t, v, tok)
	if again := mustVerify(t, v, tok); !sameMap(first, again) {
		t.Error("the second Verify of a token verified it again; want it answered from the cache")
	}
	if n := middleware.JWTCacheLen(v); n != 1 {
		t.Errorf("%d cached tokens; want 1", n)
	}

	// Never past "exp", with no leeway here.
	now.Store(time.Unix(exp.Unix(), 0).UnixNano())
	if _, _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("Verify at exp: %v; want ErrTokenExpired", err)
	}

	// Not remembered: tokens without "exp", and failures.
	v2 := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	noExp := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "u1"})
	if a, b := mustVerify(t, v2, noExp), mustVerify(t, v2, noExp); sameMap(a, b) {
		t.Error("a token without exp was remembered")
	}
	bad := sign(t, jwt.SigningMethodHS256, secret2, "", claims())
	for range 2 {
		if _, _, err := v2.Verify(context.Background(), bad); err == nil {
			t.Fatal("a token with a bad signature verified")
		}
	}
	if n := middleware.JWTCacheLen(v2); n != 0 {
		t.Errorf("%d cached tokens after a token without exp and a bad one; want 0", n)
	}

	off := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: -1})
	if a, b := mustVerify(t, off, tok), mustVerify(t, off, tok); sameMap(a, b) || middleware.JWTCacheLen(off) != -1 {
		t.Error("CacheSize -1: the token was remembered")
	}
}

// TestJWTCacheBounded: the cache never holds more than CacheSize tokens,
// and every token still verifies.
func TestJWTCacheBounded(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: 4})
	for i := range 50 {
		tok := sign(t, jwt.SigningMethodHS256, secret, "", claims("n", i))
		if c := mustVerify(t, v, tok); fmt.Sprint(c["n"]) != fmt.Sprint(i) {
			t.Fatalf("token %d: claims %v", i, c)
		}
		if n := middleware.JWTCacheLen(v); n > 4 {
			t.Fatalf("%d cached tokens; want at most 4", n)
		}
	}
}

// TestJWTCacheKeyRotation: a remembered token is verified again once the
// key set changes, so a token whose key is gone stops verifying.
func TestJWTCacheKeyRotation(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(rsaJWK("k", &rsaKey().PublicKey)))
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Nanosecond})
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), "k", claims())
	if a, b := mustVerify(t, v, tok), mustVerify(t, v, tok); !sameMap(a, b) {
		t.Fatal("the token was not remembered")
	}
	// The provider replaces key k; a token with an unknown key ID makes
	// the verifier fetch the new set.
	srv.set(http.StatusOK, jwks(rsaJWK("k", &rsaKey2().PublicKey), edJWK("e", edPublic())))
	hits := srv.hits.Load()
	mustVerify(t, v, sign(t, jwt.SigningMethodEdDSA, edKey(), "e", claims()))
	if srv.hits.Load() == hits {
		t.Fatal("no fetch")
	}
	if _, _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Errorf("the remembered token after its key was replaced: %v; want ErrTokenSignatureInvalid", err)
	}
}
