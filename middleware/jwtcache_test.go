package middleware_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/golang-jwt/jwt/v5"
)

// fakeClock is a clock the tests set; SetJWTClock gives it to a verifier.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

func newClockedVerifier(t testing.TB, opts middleware.JWTOptions, clock *fakeClock) *middleware.JWTVerifier {
	t.Helper()
	v := newVerifier(t, opts)
	middleware.SetJWTClock(v, clock.now)
	return v
}

// sameMap reports whether a and b are the same map, not merely equal ones.
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// mustVerify verifies tok and returns its claims, failing t if it does not
// verify.
func mustVerify(t *testing.T, v *middleware.JWTVerifier, tok string) map[string]any {
	t.Helper()
	c, _, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cacheLen(v *middleware.JWTVerifier) int {
	n, _ := middleware.JWTCacheLen(v)
	return n
}

func TestJWTCacheHit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		method  jwt.SigningMethod
		signKey any
		key     any
	}{
		{jwt.SigningMethodHS256, secret, secret},
		{jwt.SigningMethodRS256, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodES256, p256Key(), &p256Key().PublicKey},
	} {
		t.Run(tt.method.Alg(), func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: tt.key}}})
			tok := sign(t, tt.method, tt.signKey, "", claims("role", "admin", "groups", []string{"a", "b"}))
			c1, raw1, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if n := cacheLen(v); n != 1 {
				t.Fatalf("%d cached tokens after one verification; want 1", n)
			}
			c2, raw2, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("second Verify: %v", err)
			}
			if !sameMap(c1, c2) || &raw1[0] != &raw2[0] || len(raw1) != len(raw2) {
				t.Errorf("second Verify did not answer from the cache")
			}
			if c2["role"] != "admin" || !bytes.Equal(raw1, raw2) {
				t.Errorf("claims %v, raw %s", c2, raw2)
			}
			// A token that differs in one character is another token.
			other := tok[:len(tok)-1] + string(tok[len(tok)-1]^1)
			if _, _, err := v.Verify(context.Background(), other); err == nil {
				t.Error("a token differing from a cached one in its last character was accepted")
			}
		})
	}
}

// TestJWTCacheHitAllocs: a cache hit allocates nothing. (Not parallel:
// AllocsPerRun counts the allocations of the whole program.)
func TestJWTCacheHitAllocs(t *testing.T) {
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: &p256Key().PublicKey}}})
	tok := sign(t, jwt.SigningMethodES256, p256Key(), "", claims("role", "admin"))
	if _, _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { v.Verify(context.Background(), tok) }); allocs > 0 {
		t.Errorf("a cache hit makes %v allocations; want 0", allocs)
	}
}

// TestJWTCacheHTTP: through the middleware over HTTP, the second request
// with a token gets the same claims; once the token expires it gets 401.
func TestJWTCacheHTTP(t *testing.T) {
	t.Parallel()
	clock := new(fakeClock)
	now := time.Now()
	clock.set(now)
	v := newClockedVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Leeway: -1}, clock)
	srv := serveJWT(t, v)
	tok := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "u1", "n": json.Number("12345678901234567890"), "exp": now.Add(time.Minute).Unix()})
	get := func() (int, string) {
		req, _ := http.NewRequest("POST", srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	s1, b1 := get()
	s2, b2 := get()
	if s1 != 200 || s2 != 200 || b1 != b2 || !strings.Contains(b1, `"n":12345678901234567890`) {
		t.Fatalf("first %d %s, second %d %s; want the same claims twice", s1, b1, s2, b2)
	}
	if n := cacheLen(v); n != 1 {
		t.Errorf("%d cached tokens; want 1", n)
	}
	clock.set(now.Add(2 * time.Minute))
	if s, b := get(); s != http.StatusUnauthorized {
		t.Errorf("after exp: %d %s; want 401", s, b)
	}
	if n := cacheLen(v); n != 0 {
		t.Errorf("%d cached tokens after the token expired; want 0", n)
	}
}

// TestJWTCacheTimeBoundaries holds the cache to jwt's Validator at the
// edges of "exp" and "nbf": for each probe time, a verifier that has the
// token cached (verified a moment before at a time it was valid) answers
// as a verifier without a cache does.
func TestJWTCacheTimeBoundaries(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_900_000_000, 0)
	type window struct {
		name    string
		claims  jwt.MapClaims
		valid   time.Time   // a time the token is valid at, for a leeway of 0
		borders []time.Time // where validity changes, before the leeway
	}
	windows := []window{
		{"exp", jwt.MapClaims{"exp": base.Unix()}, base.Add(-time.Hour), []time.Time{base}},
		{"nbf", jwt.MapClaims{"nbf": base.Unix()}, base.Add(time.Hour), []time.Time{base}},
		{"nbf and exp", jwt.MapClaims{"nbf": base.Unix(), "exp": base.Unix() + 60}, base.Add(30 * time.Second), []time.Time{base, base.Add(time.Minute)}},
		// NumericDate keeps whole seconds: exp 1.9e9+0.75 expires at 1.9e9.
		{"fractional exp", jwt.MapClaims{"exp": float64(base.Unix()) + 0.75}, base.Add(-time.Hour), []time.Time{base, base.Add(750 * time.Millisecond)}},
		{"fractional nbf", jwt.MapClaims{"nbf": float64(base.Unix()) + 0.75}, base.Add(time.Hour), []time.Time{base, base.Add(750 * time.Millisecond)}},
		{"exp 0", jwt.MapClaims{"exp": 0, "sub": "x"}, time.Time{}, nil},
	}
	for _, leeway := range []time.Duration{-1, 0, 5 * time.Minute} {
		eff := leeway // the leeway in effect
		switch {
		case leeway < 0:
			eff = 0
		case leeway == 0:
			eff = middleware.DefaultJWTLeeway
		}
		for _, w := range windows {
			t.Run(fmt.Sprintf("%s/leeway=%v", w.name, leeway), func(t *testing.T) {
				t.Parallel()
				clock := new(fakeClock)
				keys := []middleware.JWTKey{{Key: secret}}
				cached := newClockedVerifier(t, middleware.JWTOptions{Keys: keys, Leeway: leeway}, clock)
				plain := newClockedVerifier(t, middleware.JWTOptions{Keys: keys, Leeway: leeway, CacheSize: -1}, clock)
				tok := sign(t, jwt.SigningMethodHS256, secret, "", w.claims)

				var probes []time.Time
				for _, b := range w.borders {
					for _, at := range []time.Time{b.Add(-eff), b.Add(eff)} {
						for _, d := range []time.Duration{-time.Second, -time.Nanosecond, 0, time.Nanosecond, time.Second} {
							probes = append(probes, at.Add(d))
						}
					}
				}
				probes = append(probes, base.Add(-24*time.Hour), base.Add(24*time.Hour))
				accepted := 0
				for _, at := range probes {
					if !w.valid.IsZero() {
						clock.set(w.valid)
						if _, _, err := cached.Verify(context.Background(), tok); err != nil {
							t.Fatalf("at a valid time: %v", err)
						}
						if n := cacheLen(cached); n != 1 {
							t.Fatalf("%d cached tokens; want 1", n)
						}
					}
					clock.set(at)
					_, _, want := plain.Verify(context.Background(), tok)
					_, _, got := cached.Verify(context.Background(), tok)
					if (got == nil) != (want == nil) ||
						errors.Is(got, jwt.ErrTokenExpired) != errors.Is(want, jwt.ErrTokenExpired) ||
						errors.Is(got, jwt.ErrTokenNotValidYet) != errors.Is(want, jwt.ErrTokenNotValidYet) {
						t.Errorf("at base%+v: cached %v; without cache %v", at.Sub(base), got, want)
					}
					if want == nil {
						accepted++
					}
				}
				if !w.valid.IsZero() && (accepted == 0 || accepted == len(probes)) {
					t.Errorf("%d of %d probes accepted: the probes miss the border", accepted, len(probes))
				}
				if w.valid.IsZero() && cacheLen(cached) != 0 {
					t.Error("a token never valid was cached")
				}
			})
		}
	}
}

// TestJWTCacheExactBorder spells out one case of the above: with no
// leeway, a token with exp E is valid until E-1ns and rejected from E on,
// cached or not.
func TestJWTCacheExactBorder(t *testing.T) {
	t.Parallel()
	clock := new(fakeClock)
	exp := time.Unix(1_900_000_000, 0)
	v := newClockedVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Leeway: -1}, clock)
	tok := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": exp.Unix()})
	clock.set(exp.Add(-time.Second))
	c1 := mustVerify(t, v, tok)
	clock.set(exp.Add(-time.Nanosecond))
	c2, _, err := v.Verify(context.Background(), tok)
	if err != nil || !sameMap(c1, c2) {
		t.Fatalf("1ns before exp: %v (from the cache: %v); want the cached token", err, err == nil && sameMap(c1, c2))
	}
	clock.set(exp)
	if _, _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("at exp: %v; want ErrTokenExpired", err)
	}
	if n := cacheLen(v); n != 0 {
		t.Errorf("the expired token is still cached (%d entries)", n)
	}
}

func TestJWTCacheNeverCachesFailures(t *testing.T) {
	t.Parallel()
	clock := new(fakeClock)
	now := time.Unix(1_900_000_000, 0)
	clock.set(now)
	v := newClockedVerifier(t, middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Key: secret}}, RequireExpiry: true, Audience: []string{"funcmesh"}, Leeway: -1,
	}, clock)
	for name, tok := range map[string]string{
		"no exp":         sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"aud": "funcmesh"}),
		"wrong audience": sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"aud": "other", "exp": now.Unix() + 60}),
		"expired":        sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"aud": "funcmesh", "exp": now.Unix()}),
		"bad signature":  sign(t, jwt.SigningMethodHS256, secret2, "", jwt.MapClaims{"aud": "funcmesh", "exp": now.Unix() + 60}),
	} {
		for i := range 2 {
			if _, _, err := v.Verify(context.Background(), tok); err == nil {
				t.Errorf("%s, try %d: accepted", name, i)
			}
		}
	}
	if n := cacheLen(v); n != 0 {
		t.Errorf("%d failed tokens cached", n)
	}
	// A token that was not yet valid when first seen is accepted once it is.
	future := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"aud": "funcmesh", "nbf": now.Unix() + 10, "exp": now.Unix() + 60})
	if _, _, err := v.Verify(context.Background(), future); !errors.Is(err, jwt.ErrTokenNotValidYet) {
		t.Fatalf("before nbf: %v", err)
	}
	clock.set(now.Add(10 * time.Second))
	if _, _, err := v.Verify(context.Background(), future); err != nil {
		t.Fatalf("at nbf: %v", err)
	}
}

func TestJWTCacheDisabled(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: -1})
	tok := sign(t, jwt.SigningMethodHS256, secret, "", claims())
	c1 := mustVerify(t, v, tok)
	c2 := mustVerify(t, v, tok)
	if sameMap(c1, c2) {
		t.Error("with CacheSize -1 the second Verify returned the first one's claims")
	}
	if n := cacheLen(v); n != -1 {
		t.Errorf("JWTCacheLen = %d; want -1 (no cache)", n)
	}
}

func TestJWTCacheDefaultBounds(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	entries, bytes, entryBytes := middleware.JWTCacheBounds(v)
	if entries != middleware.DefaultJWTCacheSize || bytes != middleware.DefaultJWTCacheSize*8<<10 || entryBytes != 64<<10 {
		t.Errorf("bounds %d entries, %d bytes, %d bytes per entry; want %d, 8 MiB, 64 KiB", entries, bytes, entryBytes, middleware.DefaultJWTCacheSize)
	}
	// Whatever the shards, the bounds add up to what the documentation
	// says.
	for _, size := range []int{1, 2, 7, 8, 15, 16, 17, 31, 100, 129, 1000, 1025, 5000} {
		v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: size})
		entries, bytes, entryBytes := middleware.JWTCacheBounds(v)
		if entries != size || bytes != size*8<<10 || entryBytes != min(64<<10, size*8<<10) {
			t.Errorf("CacheSize %d: bounds %d entries, %d bytes, %d bytes per entry", size, entries, bytes, entryBytes)
		}
	}
}

// TestJWTCacheEviction fills small caches with more valid tokens than they
// hold: they never go over their bounds, and every token still verifies.
func TestJWTCacheEviction(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		size   int
		tokens int
		extra  int // bytes of padding claim per token
	}{
		{"entries", 8, 28, 0},
		{"bytes", 4, 24, 6 << 10}, // 4 entries may take 32 KiB: about two of these tokens
		{"shards", 64, 400, 0},    // 4 shards of 16, which 400 tokens all fill
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: tt.size})
			maxEntries, maxBytes, _ := middleware.JWTCacheBounds(v)
			toks := make([]string, tt.tokens)
			for i := range toks {
				toks[i] = sign(t, jwt.SigningMethodHS256, secret, "", claims("sub", fmt.Sprint("u", i), "pad", strings.Repeat("p", tt.extra)))
			}
			peak := 0
			rounds := 3
			if tt.tokens > 100 {
				rounds = 1
			}
			for round := range rounds {
				for i, tok := range toks {
					c, _, err := v.Verify(context.Background(), tok)
					if err != nil || c["sub"] != fmt.Sprint("u", i) {
						t.Fatalf("round %d, token %d: %v, %v", round, i, c["sub"], err)
					}
					n, b := middleware.JWTCacheLen(v)
					if n > maxEntries || b > maxBytes || n < 1 {
						t.Fatalf("round %d, token %d: %d entries, %d bytes; bounds %d, %d", round, i, n, b, maxEntries, maxBytes)
					}
					peak = max(peak, n)
				}
			}
			if tt.extra == 0 && peak != maxEntries {
				t.Errorf("the cache peaked at %d entries; want it full, %d", peak, maxEntries)
			}
			if tt.extra > 0 && peak >= maxEntries {
				t.Errorf("the cache peaked at %d entries of ~%d bytes: the byte bound did not bite", peak, tt.extra)
			}
		})
	}
}

// TestJWTCacheTooLarge: a token whose entry would pass the per-entry bound
// verifies, every time in full.
func TestJWTCacheTooLarge(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	many := make([]any, 0, 3000)
	for range cap(many) {
		many = append(many, 1)
	}
	tok := sign(t, jwt.SigningMethodHS256, secret, "", claims("many", many)) // ~8 KB, ~100 KB decoded
	if len(tok) > middleware.MaxJWTLen {
		t.Fatalf("token of %d bytes", len(tok))
	}
	c1 := mustVerify(t, v, tok)
	c2 := mustVerify(t, v, tok)
	if sameMap(c1, c2) || cacheLen(v) != 0 {
		t.Errorf("a token of %d bytes with %d claims elements was cached", len(tok), len(many))
	}
	small := sign(t, jwt.SigningMethodHS256, secret, "", claims())
	if _, _, err := v.Verify(context.Background(), small); err != nil || cacheLen(v) != 1 {
		t.Errorf("small token: %v, %d cached", err, cacheLen(v))
	}
}

// TestJWTCacheRotation: a cached token signed with a key the JWKS no
// longer holds is rejected, whether the new key set came from Refresh, a
// periodic refresh or a token naming a new key ID; a refresh that brings
// the same keys keeps the cache.
func TestJWTCacheRotation(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"Refresh", "periodic", "unknown kid"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, jwks(rsaJWK("a", &rsaKey().PublicKey)))
			opts := middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Nanosecond, JWKSRefresh: time.Hour}
			if how == "periodic" {
				opts.JWKSRefresh = 10 * time.Millisecond
			}
			v := newVerifier(t, opts)
			if err := v.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			old := sign(t, jwt.SigningMethodRS256, rsaKey(), "a", claims())
			fresh := sign(t, jwt.SigningMethodES256, p256Key(), "b", claims())
			c1, _, err := v.Verify(context.Background(), old)
			if err != nil {
				t.Fatal(err)
			}

			// The same keys again: the cached token stays cached.
			hits := srv.hits.Load()
			switch how {
			case "periodic":
				waitFor(t, func() bool { return srv.hits.Load() >= hits+2 })
			case "unknown kid":
				if _, _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey(), "zz", claims())); !errors.Is(err, jwt.ErrTokenUnverifiable) {
					t.Fatalf("unknown kid: %v", err)
				}
				if srv.hits.Load() == hits {
					t.Fatal("the unknown kid fetched nothing")
				}
			}
			if how != "Refresh" {
				c2, _, err := v.Verify(context.Background(), old)
				if err != nil || !sameMap(c1, c2) {
					t.Errorf("after a fetch of the same keys: %v, from the cache: %v; want the cached token", err, err == nil && sameMap(c1, c2))
				}
			} else {
				// Refresh empties the cache even when the keys are the same.
				if err := v.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				if n := cacheLen(v); n != 0 {
					t.Errorf("%d cached tokens after Refresh; want 0", n)
				}
				c2, _, err := v.Verify(context.Background(), old)
				if err != nil || sameMap(c1, c2) {
					t.Errorf("after Refresh: %v, from the cache: %v; want verified again", err, err == nil && sameMap(c1, c2))
				}
			}

			// The provider rotates: key b in, key a out.
			srv.set(http.StatusOK, jwks(ecJWK("b", &p256Key().PublicKey)))
			hits = srv.hits.Load()
			switch how {
			case "Refresh":
				if err := v.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
			case "periodic":
				waitFor(t, func() bool { return srv.hits.Load() >= hits+2 })
			case "unknown kid":
				if _, _, err := v.Verify(context.Background(), fresh); err != nil {
					t.Fatalf("token of the new key: %v", err)
				}
			}
			if _, _, err := v.Verify(context.Background(), old); !errors.Is(err, jwt.ErrTokenUnverifiable) {
				t.Errorf("cached token of the removed key: %v; want ErrTokenUnverifiable", err)
			}
			if _, _, err := v.Verify(context.Background(), fresh); err != nil {
				t.Errorf("token of the new key: %v", err)
			}
		})
	}
}

// TestJWTCacheKeyAdded: a key set that changes by a key added also drops
// the cached tokens, which verify again with the key they were signed
// with.
func TestJWTCacheKeyAdded(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(edJWK("a", edPublic())))
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Nanosecond})
	tok := sign(t, jwt.SigningMethodEdDSA, edKey(), "a", claims())
	c1 := mustVerify(t, v, tok)
	srv.set(http.StatusOK, jwks(edJWK("a", edPublic()), edJWK("b", edKey2().Public().(ed25519.PublicKey))))
	if _, _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodEdDSA, edKey2(), "b", claims())); err != nil {
		t.Fatal(err)
	}
	c2 := mustVerify(t, v, tok)
	if sameMap(c1, c2) {
		t.Error("the token was answered from the cache after the key set changed")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestJWTCacheConcurrent runs hits, misses, evictions, failures and
// expiries at once (run it with -race) on a cache smaller than the set of
// tokens, while the clock moves across the expiry of some of them; every
// answer must be right.
func TestJWTCacheConcurrent(t *testing.T) {
	t.Parallel()
	clock := new(fakeClock)
	expiry := time.Unix(1_900_000_000, 0)
	start := expiry.Add(-10 * time.Millisecond)
	clock.set(start)
	v := newClockedVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: 4, Leeway: -1}, clock)
	type tok struct {
		s   string
		sub string // "" for a token that must fail
	}
	var toks []tok
	for i := range 12 {
		exp := expiry.Add(time.Hour)
		if i%4 == 3 {
			exp = expiry // expires while the clock runs
		}
		sub := fmt.Sprint("u", i)
		toks = append(toks, tok{sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": sub, "exp": exp.Unix()}), sub})
	}
	toks = append(toks, tok{s: sign(t, jwt.SigningMethodHS256, secret2, "", claims())}, tok{s: "not.a.token"})

	stop := make(chan struct{})
	clockDone := make(chan struct{})
	go func() { // the clock goes back and forth across expiry
		defer close(clockDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			clock.set(start.Add(time.Duration(i%20) * time.Millisecond))
			runtime.Gosched()
		}
	}()
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				tk := toks[(g*7+i)%len(toks)]
				c, _, err := v.Verify(context.Background(), tk.s)
				var bad bool
				switch {
				case tk.sub == "":
					bad = err == nil
				case err == nil:
					bad = c["sub"] != tk.sub
				default:
					bad = !errors.Is(err, jwt.ErrTokenExpired)
				}
				if bad {
					t.Errorf("token of %q: claims %v, error %v", tk.sub, c, err)
					if failures.Add(1) > 5 {
						return
					}
				}
			}
		})
	}
	wg.Go(func() { // a token valid for an hour never fails
		for range 400 {
			if _, _, err := v.Verify(context.Background(), toks[0].s); err != nil {
				t.Errorf("token valid for an hour: %v", err)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	<-clockDone
	if n, _ := middleware.JWTCacheLen(v); n > 4 {
		t.Errorf("%d entries in a cache of 4", n)
	}
}

// TestJWTCacheSizeEstimate holds the cache's estimate of the memory of
// decoded claims, on which its byte bound rests, to the memory the
// decoder really keeps alive, for ordinary and for lopsided claims. (Not
// parallel: it reads the heap's size.)
func TestJWTCacheSizeEstimate(t *testing.T) {
	keys := func(n int, value string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "%q:%s", fmt.Sprint("k", i), value)
		}
		b.WriteString("}")
		return b.String()
	}
	payloads := map[string]string{
		"typical": `{"iss":"https://idp.example.com/realms/main","sub":"8f14e45f-ceea-467f-a0e6-0c9a6f0b1f3d","aud":["funcmesh","account"],` +
			`"exp":1900000000,"iat":1899996400,"auth_time":1899996000,"jti":"a1b2c3d4-e5f6","azp":"web","scope":"openid profile email",` +
			`"email_verified":true,"name":"Ada Lovelace","preferred_username":"ada","email":"ada@example.com",` +
			`"realm_access":{"roles":["admin","user","offline_access"]},"tenant":"t1"}`,
		"one claim":        `{"sub":"u"}`,
		"8 keys":           keys(8, "1"),
		"9 keys":           keys(9, `"v"`),
		"100 numbers":      keys(100, "12345"),
		"1000 bools":       keys(1000, "true"),
		"nested arrays":    `{"a":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "}",
		"array of numbers": `{"a":[` + strings.Repeat("1,", 2000) + `1]}`,
		"array of strings": `{"a":[` + strings.Repeat(`"x",`, 1000) + `"x"]}`,
		"nested objects":   `{"a":` + strings.Repeat(`{"a":`, 300) + "1" + strings.Repeat("}", 300) + "}",
		"escaped strings":  keys(50, `"caf\u00e9 \"x\""`),
		"long string":      `{"a":"` + strings.Repeat("x", 10000) + `"}`,
		"blanks":           `{"a":1` + strings.Repeat(" ", 10000) + `}`,
		"long key":         `{"` + strings.Repeat("k", 5000) + `":"` + strings.Repeat("v", 5000) + `"}`,
	}
	for name, p := range payloads {
		n := 200
		if len(p) < 1000 {
			n = 2000
		}
		kept := make([]map[string]any, n)
		est := 0
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC() // sync.Pools are emptied in two collections
		runtime.ReadMemStats(&before)
		for i := range kept {
			m, size, err := middleware.DecodeClaims([]byte(p))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			kept[i], est = m, size
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		real := int(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(kept)
		t.Logf("%-16s %6d bytes of JSON: kept %7d bytes, estimated %7d", name, len(p), real, est)
		if est < real {
			t.Errorf("%s: estimated %d bytes; the decoder keeps %d", name, est, real)
		}
		if est > 4*real+1024 {
			t.Errorf("%s: estimated %d bytes, much more than the %d the decoder keeps", name, est, real)
		}
	}
}
