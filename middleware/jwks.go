package middleware

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on a JSON Web Key Set from outside.
const (
	// MaxJWKSSize is the largest JWKS document read, in bytes.
	MaxJWKSSize = 1 << 20
	// MaxJWKSKeys is the most keys a JWKS may hold.
	MaxJWKSKeys = 100
)

// ParseJWKS parses a JSON Web Key Set (RFC 7517), {"keys": [...]}, into
// verification keys. It understands RSA keys ("kty": "RSA", n and e), NIST
// curve keys ("EC", crv P-256, P-384 or P-521, x and y) and Ed25519 keys
// ("OKP", crv Ed25519, x), parsed with the standard library and checked
// (an EC point must be on its curve, an RSA modulus 2048 to 8192 bits).
//
// Keys that are not for verifying signatures are left out: those with a
// "use" other than "sig", "key_ops" without "verify", an "alg" that is not
// a signature algorithm of the key's kind, symmetric ("oct") keys, which
// must never come from a URL, and keys of other kinds. A malformed key of a
// known kind is left out too, so that one bad entry does not stop a key
// rotation; ParseJWKS fails only when the document is not a key set, holds
// more than [MaxJWKSKeys] entries, or leaves no usable key, and the error
// then says why each key was left out.
func ParseJWKS(data []byte) ([]JWTKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("middleware: JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`middleware: JWKS: no "keys" array`)
	}
	if len(set.Keys) > MaxJWKSKeys {
		return nil, fmt.Errorf("middleware: JWKS: %d keys, at most %d", len(set.Keys), MaxJWKSKeys)
	}
	keys := make([]JWTKey, 0, len(set.Keys))
	var skipped []error
	for i, raw := range set.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		if len(skipped) == 0 {
			return nil, errors.New("middleware: JWKS: empty key set")
		}
		return nil, fmt.Errorf("middleware: JWKS: no usable key: %w", errors.Join(skipped...))
	}
	return keys, nil
}

type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

func parseJWK(raw json.RawMessage) (JWTKey, error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return JWTKey{}, err
	}
	if j.Use != "" && j.Use != "sig" {
		return JWTKey{}, fmt.Errorf("use %q", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return JWTKey{}, errors.New(`key_ops without "verify"`)
	}
	k := JWTKey{ID: j.Kid, Algorithm: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err := b64(j.N)
		if err != nil {
			return JWTKey{}, fmt.Errorf("RSA n: %w", err)
		}
		e, err := b64(j.E)
		if err != nil {
			return JWTKey{}, fmt.Errorf("RSA e: %w", err)
		}
		if len(e) == 0 || len(e) > 4 {
			return JWTKey{}, fmt.Errorf("RSA e of %d bytes", len(e))
		}
		var ei int64
		for _, b := range e {
			ei = ei<<8 | int64(b)
		}
		if ei > 1<<31-1 {
			return JWTKey{}, errors.New("RSA e too large")
		}
		k.Key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ei)}
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return JWTKey{}, fmt.Errorf("EC curve %q", j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64(j.X)
		if err != nil {
			return JWTKey{}, fmt.Errorf("EC x: %w", err)
		}
		y, err := b64(j.Y)
		if err != nil {
			return JWTKey{}, fmt.Errorf("EC y: %w", err)
		}
		if len(x) != size || len(y) != size {
			return JWTKey{}, fmt.Errorf("EC x and y of %d and %d bytes; %s needs %d", len(x), len(y), j.Crv, size)
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return JWTKey{}, fmt.Errorf("EC point: %w", err)
		}
		k.Key = pub
	case "OKP":
		if j.Crv != "Ed25519" {
			return JWTKey{}, fmt.Errorf("OKP curve %q", j.Crv)
		}
		x, err := b64(j.X)
		if err != nil {
			return JWTKey{}, fmt.Errorf("OKP x: %w", err)
		}
		if len(x) != ed25519.PublicKeySize {
			return JWTKey{}, fmt.Errorf("Ed25519 x of %d bytes", len(x))
		}
		k.Key = ed25519.PublicKey(x)
	case "oct":
		return JWTKey{}, errors.New("symmetric key in a key set")
	default:
		return JWTKey{}, fmt.Errorf("kty %q", j.Kty)
	}
	if _, err := checkKey(k); err != nil {
		return JWTKey{}, err
	}
	return k, nil
}

// b64 decodes base64url, with or without padding (RFC 7517 says without;
// some servers pad).
func b64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// jwksFetchTimeout bounds one fetch of the key set.
const jwksFetchTimeout = 10 * time.Second

// jwksCache holds the keys of a JWKS URL: fetched at start, refreshed every
// refresh interval and, at most once per minInterval, when a token names a
// key ID it does not hold. A failed fetch keeps the keys it has.
type jwksCache struct {
	url         string
	client      *http.Client
	refresh     time.Duration
	minInterval time.Duration
	logger      *slog.Logger

	keys atomic.Pointer[keySet] // nil until a fetch succeeds

	ctx    context.Context // canceled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	last     time.Time     // start of the last fetch
	inflight chan struct{} // closed when the running fetch ends; nil when none runs
	lastErr  error         // the result of the last fetch
}

func newJWKSCache(url string, client *http.Client, refresh, minInterval time.Duration, logger *slog.Logger) *jwksCache {
	ctx, cancel := context.WithCancel(context.Background())
	c := &jwksCache{
		url: url, client: client, refresh: refresh, minInterval: minInterval, logger: logger,
		ctx: ctx, cancel: cancel,
	}
	c.wg.Add(1)
	go c.loop()
	return c
}

// loop fetches the keys at once, then every refresh interval. After a
// failed fetch it retries sooner: after minInterval (at least a second),
// doubled at each failure in a row, up to the refresh interval.
func (c *jwksCache) loop() {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	retry := time.Duration(0)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ch, ok := c.start(true)
		if !ok {
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-ch:
		}
		c.mu.Lock()
		failed := c.lastErr != nil
		c.mu.Unlock()
		if !failed {
			retry = 0
			t.Reset(c.refresh)
			continue
		}
		if retry == 0 {
			retry = max(c.minInterval, time.Second)
		} else {
			retry *= 2
		}
		retry = min(retry, c.refresh)
		t.Reset(retry)
	}
}

// start starts a fetch, or joins the one running, and returns a channel
// closed when it ends. Unless force is set, it starts none within
// minInterval of the last, and returns false.
func (c *jwksCache) start(force bool) (<-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	if c.inflight != nil {
		return c.inflight, true
	}
	now := time.Now()
	if !force && !c.last.IsZero() && now.Sub(c.last) < c.minInterval {
		return nil, false
	}
	c.last = now
	ch := make(chan struct{})
	c.inflight = ch
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := c.fetch()
		c.mu.Lock()
		c.lastErr = err
		c.inflight = nil
		c.mu.Unlock()
		close(ch)
	}()
	return ch, true
}

// refreshNow fetches the keys (or waits for the fetch running) and returns
// its error.
func (c *jwksCache) refreshNow(ctx context.Context) error {
	ch, ok := c.start(true)
	if !ok {
		return errors.New("middleware: JWKS: verifier closed")
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// refreshFor is the refresh a token with an unknown key ID asks for: it
// waits for a fetch when one runs or may start, and returns at once when
// the last one was too recent.
func (c *jwksCache) refreshFor(ctx context.Context) {
	ch, ok := c.start(false)
	if !ok {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (c *jwksCache) fetch() error {
	ctx, cancel := context.WithTimeout(c.ctx, jwksFetchTimeout)
	defer cancel()
	keys, err := c.get(ctx)
	if err != nil {
		if c.logger != nil && c.ctx.Err() == nil {
			c.logger.LogAttrs(ctx, slog.LevelWarn, "JWKS refresh failed; keeping the cached keys",
				slog.String("url", c.url), slog.String("error", err.Error()))
		}
		return err
	}
	vks := make([]verifyKey, 0, len(keys))
	for _, k := range keys {
		vk, err := checkKey(k) // cannot fail: ParseJWKS checked them
		if err == nil {
			vks = append(vks, vk)
		}
	}
	// Fetches never overlap (start runs one at a time), so the generation
	// read here is the last one stored.
	old := c.keys.Load()
	if old != nil && sameKeys(old.keys, vks) {
		// The same keys: tokens verified with them stay verified.
		return nil
	}
	gen := uint64(1)
	if old != nil {
		gen = old.gen + 1
	}
	c.keys.Store(&keySet{keys: vks, gen: gen})
	if c.logger != nil {
		c.logger.LogAttrs(ctx, slog.LevelDebug, "JWKS refreshed", slog.String("url", c.url), slog.Int("keys", len(vks)))
	}
	return nil
}

func (c *jwksCache) get(ctx context.Context) ([]JWTKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("middleware: JWKS: GET %s: %s", c.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxJWKSSize {
		return nil, fmt.Errorf("middleware: JWKS: GET %s: more than %d bytes", c.url, MaxJWKSSize)
	}
	return ParseJWKS(body)
}

// keySet is one version of the keys fetched from the JWKS URL.
type keySet struct {
	keys []verifyKey
	// gen numbers the versions from 1; a fetch that brings the same keys
	// keeps the version, so that the tokens verified with them stay in
	// the verified-token cache.
	gen uint64
}

// snapshot returns the cached keys, nil until a fetch has succeeded.
func (c *jwksCache) snapshot() *keySet {
	return c.keys.Load()
}

// sameKeys reports whether a and b hold the same keys, with the same IDs
// and algorithms, in the same order.
func sameKeys(a, b []verifyKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].id != b[i].id || a[i].alg != b[i].alg || a[i].kind != b[i].kind {
			return false
		}
		k, ok := a[i].key.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !k.Equal(b[i].key) {
			return false
		}
	}
	return true
}

func (c *jwksCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}
