package middleware_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves a key set that a test can change, or fail.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int64
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func TestJWKSVerify(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(
		rsaJWK("rsa", &rsaKey().PublicKey),
		ecJWK("p256", &p256Key().PublicKey),
		ecJWK("p521", &p521Key().PublicKey),
		edJWK("ed", edPublic()),
		map[string]any{"kty": "oct", "kid": "hmac", "k": b64(string(secret))}, // must be ignored
	))
	// NewJWTVerifier fetched the set.
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL + "/jwks.json"})
	ok := []string{
		sign(t, jwt.SigningMethodRS256, rsaKey(), "rsa", claims()),
		sign(t, jwt.SigningMethodPS512, rsaKey(), "rsa", claims()),
		sign(t, jwt.SigningMethodES256, p256Key(), "p256", claims()),
		sign(t, jwt.SigningMethodES512, p521Key(), "p521", claims()),
		sign(t, jwt.SigningMethodEdDSA, edKey(), "ed", claims()),
		sign(t, jwt.SigningMethodEdDSA, edKey(), "", claims()), // no kid: every key of the kind is tried
	}
	for i, tok := range ok {
		if _, _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("token %d: %v", i, err)
		}
	}
	bad := map[string]string{
		"HS256 with the oct key of the set": sign(t, jwt.SigningMethodHS256, secret, "hmac", claims()),
		"ES256 token naming the P-521 key":  sign(t, jwt.SigningMethodES256, p256Key(), "p521", claims()),
		"RS256 signed by another key":       sign(t, jwt.SigningMethodRS256, rsaKey2(), "rsa", claims()),
	}
	for name, tok := range bad {
		if _, _, err := v.Verify(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(rsaJWK("2024", &rsaKey().PublicKey)))
	v := newVerifier(t, middleware.JWTOptions{
		JWKSURL:        srv.URL,
		JWKSRefresh:    time.Hour,
		JWKSMinRefresh: time.Nanosecond, // an unknown kid may always refetch
	})
	old := sign(t, jwt.SigningMethodRS256, rsaKey(), "2024", claims())
	if _, _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}

	// The provider rotates: a new key, the old one gone.
	srv.set(http.StatusOK, jwks(ecJWK("2025", &p256Key().PublicKey)))
	hits := srv.hits.Load()
	fresh := sign(t, jwt.SigningMethodES256, p256Key(), "2025", claims())
	if _, _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	if got := srv.hits.Load() - hits; got != 1 {
		t.Errorf("the unknown kid made %d fetches; want 1", got)
	}
	// The new key is cached now: no more fetches.
	hits = srv.hits.Load()
	for range 3 {
		if _, _, err := v.Verify(context.Background(), fresh); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.hits.Load() - hits; got != 0 {
		t.Errorf("a known kid made %d fetches; want 0", got)
	}
	if _, _, err := v.Verify(context.Background(), old); !errors.Is(err, jwt.ErrTokenUnverifiable) {
		t.Errorf("old key after rotation: %v; want ErrTokenUnverifiable", err)
	}
}

func TestJWKSDown(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(edJWK("k1", edPublic())))
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Nanosecond})
	known := sign(t, jwt.SigningMethodEdDSA, edKey(), "k1", claims())
	unknown := sign(t, jwt.SigningMethodEdDSA, edKey2(), "k2", claims())
	if _, _, err := v.Verify(context.Background(), known); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	for _, down := range []struct {
		name string
		set  func()
	}{
		{"500", func() { srv.set(http.StatusInternalServerError, []byte("oops")) }},
		{"not a key set", func() { srv.set(http.StatusOK, []byte(`{"keys": "no"}`)) }},
		{"empty key set", func() { srv.set(http.StatusOK, []byte(`{"keys": []}`)) }},
		{"no usable keys", func() { srv.set(http.StatusOK, jwks(map[string]any{"kty": "oct", "k": "AAAA"})) }},
		{"too many keys", func() {
			many := make([]map[string]any, middleware.MaxJWKSKeys+1)
			for i := range many {
				many[i] = edJWK(fmt.Sprint(i), edPublic())
			}
			srv.set(http.StatusOK, jwks(many...))
		}},
		{"too large", func() {
			// A key set whose JSON goes on past the bound.
			pad := `{"pad":"` + strings.Repeat("x", middleware.MaxJWKSSize) + `",`
			srv.set(http.StatusOK, append([]byte(pad), jwks(edJWK("k2", edKey2().Public().(ed25519.PublicKey)))[1:]...))
		}},
		{"gone", func() { srv.CloseClientConnections(); srv.Listener.Close() }},
	} {
		down.set()
		hits := srv.hits.Load()
		// The unknown kid makes the verifier fetch the set, which fails.
		if _, _, err := v.Verify(context.Background(), unknown); !errors.Is(err, jwt.ErrTokenUnverifiable) {
			t.Errorf("%s: unknown kid: %v; want ErrTokenUnverifiable", down.name, err)
		}
		if down.name != "gone" && srv.hits.Load() == hits {
			t.Errorf("%s: the unknown kid made no fetch", down.name)
		}
		if _, _, err := v.Verify(context.Background(), known); err != nil {
			t.Errorf("%s: cached key: %v; want it kept", down.name, err)
		}
	}
}

// TestJWKSDownAtStart: with no key ever fetched every token fails, and
// the verifier picks the keys up once the endpoint comes back.
func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusServiceUnavailable, nil)
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Nanosecond})
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), "k", claims())
	if _, _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwt.ErrTokenUnverifiable) {
		t.Fatalf("Verify with no keys: %v; want ErrTokenUnverifiable", err)
	}
	srv.set(http.StatusOK, jwks(rsaJWK("k", &rsaKey().PublicKey)))
	if _, _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify after the endpoint came back: %v", err)
	}

	// Likewise for a token without a key ID.
	srv2 := newJWKSServer(t, nil)
	srv2.set(http.StatusServiceUnavailable, nil)
	v2 := newVerifier(t, middleware.JWTOptions{JWKSURL: srv2.URL, JWKSMinRefresh: time.Nanosecond})
	noKid := sign(t, jwt.SigningMethodRS256, rsaKey(), "", claims())
	if _, _, err := v2.Verify(context.Background(), noKid); !errors.Is(err, jwt.ErrTokenUnverifiable) {
		t.Fatalf("Verify with no keys: %v; want ErrTokenUnverifiable", err)
	}
	srv2.set(http.StatusOK, jwks(rsaJWK("k", &rsaKey().PublicKey)))
	if _, _, err := v2.Verify(context.Background(), noKid); err != nil {
		t.Fatalf("Verify without kid after the endpoint came back: %v", err)
	}
}

// TestJWKSRateLimit: tokens with made-up key IDs cannot make the verifier
// hammer the identity provider.
func TestJWKSRateLimit(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(rsaJWK("k", &rsaKey().PublicKey)))
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Hour})
	toks := make([]string, 50)
	for i := range toks {
		toks[i] = sign(t, jwt.SigningMethodRS256, rsaKey(), fmt.Sprintf("made-up-%d", i), claims())
	}
	start := srv.hits.Load()
	var wg sync.WaitGroup
	for i, tok := range toks {
		wg.Go(func() {
			if _, _, err := v.Verify(context.Background(), tok); !errors.Is(err, jwt.ErrTokenUnverifiable) {
				t.Errorf("made-up kid %d: %v; want ErrTokenUnverifiable", i, err)
			}
		})
	}
	wg.Wait()
	if got := srv.hits.Load() - start; got != 0 {
		t.Errorf("50 unknown kids within JWKSMinRefresh made %d fetches; want 0", got)
	}
}

func TestJWKSPeriodicRefresh(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(rsaJWK("k", &rsaKey().PublicKey)))
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSRefresh: 10 * time.Millisecond})
	deadline := time.Now().Add(10 * time.Second)
	for srv.hits.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches in 10s with a 10ms refresh interval", srv.hits.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Close stops the refreshing: no fetch starts after it returns (one
	// under way may still reach the server).
	v.Close()
	after := srv.hits.Load()
	time.Sleep(50 * time.Millisecond) // five refresh intervals: the absence of fetches is what is tested
	if got := srv.hits.Load(); got > after+1 {
		t.Errorf("%d fetches after Close", got-after)
	}
	// The cached keys still verify.
	if _, _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey(), "k", claims())); err != nil {
		t.Errorf("Verify after Close: %v", err)
	}
}

// TestJWKSWaitBoundedByContext: a token that waits for a slow key set
// fetch gives up when its request's context ends.
func TestJWKSWaitBoundedByContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 1 { // the first fetch is answered at once, the next ones hang
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Write(jwks(rsaJWK("k", &rsaKey().PublicKey)))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	v := newVerifier(t, middleware.JWTOptions{JWKSURL: srv.URL, JWKSMinRefresh: time.Nanosecond})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, rsaKey(), "unknown", claims()))
	if !errors.Is(err, jwt.ErrTokenUnverifiable) {
		t.Errorf("Verify = %v; want ErrTokenUnverifiable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Verify took %v; want it to give up with its context", d)
	}
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	rsaPub, ecPub, edPub := &rsaKey().PublicKey, &p384Key().PublicKey, edPublic()
	with := func(m map[string]any, kv ...any) map[string]any {
		c := make(map[string]any, len(m))
		for k, v := range m {
			c[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	ec := ecJWK("ec", ecPub)
	offCurve := with(ec, "y", ec["x"]) // (x, x) is not on the curve

	keys, err := middleware.ParseJWKS(jwks(
		rsaJWK("rsa", rsaPub),
		with(rsaJWK("rsa-padded", rsaPub), "n", rsaJWK("", rsaPub)["n"].(string)+"=="),
		ec, with(ec, "kid", "ec-alg", "alg", "ES384", "key_ops", []string{"verify"}),
		edJWK("ed", edPub),
		// Left out:
		with(rsaJWK("enc", rsaPub), "use", "enc"),
		with(rsaJWK("ops", rsaPub), "key_ops", []string{"encrypt"}),
		with(rsaJWK("oaep", rsaPub), "alg", "RSA-OAEP"),
		with(ec, "kid", "wrong-alg", "alg", "ES256"),
		with(ec, "kid", "off-curve", "y", offCurve["y"]),
		with(ec, "kid", "short", "x", b64("short")),
		with(ec, "kid", "secp256k1", "crv", "secp256k1"),
		with(rsaJWK("small", rsaPub), "n", b64(strings.Repeat("\xff", 128))),
		with(rsaJWK("even-e", rsaPub), "e", b64("\x02")),
		with(rsaJWK("no-n", rsaPub), "n", nil),
		with(rsaJWK("bad-b64", rsaPub), "n", "!!!"),
		map[string]any{"kty": "OKP", "crv": "X25519", "x": b64(strings.Repeat("a", 32))},
		map[string]any{"kty": "oct", "k": b64(string(secret))},
		map[string]any{"kty": "what"},
		map[string]any{"kty": 7},
	))
	if err != nil {
		t.Fatalf("ParseJWKS: %v", err)
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	if got, want := strings.Join(ids, ","), "rsa,rsa-padded,ec,ec-alg,ed"; got != want {
		t.Errorf("keys %s; want %s", got, want)
	}
	for _, k := range keys {
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			if !key.Equal(rsaPub) {
				t.Errorf("%s: another RSA key", k.ID)
			}
		case *ecdsa.PublicKey:
			if !key.Equal(ecPub) {
				t.Errorf("%s: another EC key", k.ID)
			}
		case ed25519.PublicKey:
			if !key.Equal(edPub) {
				t.Errorf("%s: another Ed25519 key", k.ID)
			}
		default:
			t.Errorf("%s: key of type %T", k.ID, key)
		}
	}

	many := make([]map[string]any, middleware.MaxJWKSKeys+1)
	for i := range many {
		many[i] = edJWK(fmt.Sprint(i), edPub)
	}
	for name, in := range map[string][]byte{
		"not JSON":        []byte("keys"),
		"not an object":   []byte(`[]`),
		"no keys":         []byte(`{}`),
		"keys not array":  []byte(`{"keys":{}}`),
		"empty":           []byte(`{"keys":[]}`),
		"nothing usable":  jwks(with(rsaJWK("enc", rsaPub), "use", "enc")),
		"too many keys":   jwks(many...),
		"null keys":       []byte(`{"keys":null}`),
		"entry not a map": []byte(`{"keys":[1]}`),
	} {
		if keys, err := middleware.ParseJWKS(in); err == nil {
			t.Errorf("%s: ParseJWKS = %d keys; want an error", name, len(keys))
		}
	}
	_, err = middleware.ParseJWKS(jwks(with(rsaJWK("enc", rsaPub), "use", "enc")))
	if err == nil || !strings.Contains(err.Error(), `use "enc"`) {
		t.Errorf("error %v; want it to say why the key was left out", err)
	}
}

func TestParseJWKSKeysUsable(t *testing.T) {
	t.Parallel()
	// What ParseJWKS returns can be given to NewJWTVerifier as is: a key
	// set in a file works like a JWKS URL.
	keys, err := middleware.ParseJWKS(jwks(rsaJWK("a", &rsaKey().PublicKey), ecJWK("b", &p256Key().PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, middleware.JWTOptions{Keys: keys})
	if _, _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, p256Key(), "b", claims())); err != nil {
		t.Error(err)
	}
}

// TestJWKSRedirectToHTTP: an https key set URL that redirects to plain
// http must not get its keys fetched in the clear (issue 16, item 4). The
// https server is a real TLS server; the http one, on loopback, serves a
// key set that would verify the token.
func TestJWKSRedirectToHTTP(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			plain := newJWKSServer(t, jwks(rsaJWK("k", &rsaKey().PublicKey)))
			tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, plain.URL+"/jwks.json", code)
			}))
			t.Cleanup(tls.Close)
			v := newVerifier(t, middleware.JWTOptions{JWKSURL: tls.URL + "/jwks.json", JWKSClient: tls.Client(), JWKSMinRefresh: time.Nanosecond})
			tok := sign(t, jwt.SigningMethodRS256, rsaKey(), "k", claims())
			if _, _, err := v.Verify(context.Background(), tok); err == nil {
				t.Errorf("a token verified with keys fetched over http after a redirect from https")
			}
			if got := plain.hits.Load(); got != 0 {
				t.Errorf("the http server got %d requests; want none", got)
			}
		})
	}
}
