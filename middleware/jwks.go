package middleware

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Bounds on a JSON Web Key Set from outside.
const (
	// MaxJWKSSize is the largest JWKS document read, in bytes.
	MaxJWKSSize = 1 << 20
	// MaxJWKSKeys is the most keys a JWKS may hold.
	MaxJWKSKeys = 100
)

// ParseJWKS parses a JSON Web Key Set (RFC 7517), {"keys": [...]}, into
// verification keys: RSA keys, NIST curve keys (P-256, P-384, P-521) and
// Ed25519 keys, parsed by github.com/MicahParks/jwkset and checked as
// [JWTOptions].Keys are (an RSA modulus of 2048 to 8192 bits, an EC
// point on its curve).
//
// Keys that are not for verifying signatures are left out: those with a
// "use" other than "sig", "key_ops" without "verify", an "alg" that is not
// a signature algorithm of the key's kind, symmetric ("oct") keys, which
// must never come from a URL, and keys of other kinds. A malformed key is
// left out too, so that one bad entry does not stop a key rotation;
// ParseJWKS fails only when the document is not a key set, holds more
// than [MaxJWKSKeys] entries, or leaves no usable key, and the error then
// says why each key was left out.
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
		var m jwkset.JWKMarshal
		err := json.Unmarshal(raw, &m)
		var k JWTKey
		if err == nil {
			var j jwkset.JWK
			if j, err = jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{}); err == nil {
				k, err = verificationKey(j)
			}
		}
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

// verificationKey returns j as a JWTKey if it is a public key for
// verifying signatures.
func verificationKey(j jwkset.JWK) (JWTKey, error) {
	m := j.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return JWTKey{}, fmt.Errorf("use %q", m.USE)
	}
	if m.KEYOPS != nil && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return JWTKey{}, errors.New(`key_ops without "verify"`)
	}
	key := j.Key()
	switch k := key.(type) {
	case []byte:
		return JWTKey{}, errors.New("symmetric key in a key set")
	case interface{ Public() crypto.PublicKey }:
		key = k.Public() // a private key published by mistake: only its public half verifies
	}
	k := JWTKey{ID: m.KID, Algorithm: m.ALG.String(), Key: key}
	if _, err := checkKey(k); err != nil {
		return JWTKey{}, err
	}
	return k, nil
}

// jwksFetchTimeout bounds one fetch of the key set.
const jwksFetchTimeout = 10 * time.Second

// jwksKeys are the keys of a JWKS URL, fetched and refreshed by jwkset
// and looked up by keyfunc.
type jwksKeys struct {
	fetched jwkset.Storage  // the keys of the last good fetch; reading it fetches nothing
	client  jwkset.Storage  // reads them, fetching the set again when a key ID is not there
	kf      keyfunc.Keyfunc // looks up a token's keys in client
	unknown *rate.Limiter   // allows those fetches at most once per JWKSMinRefresh
	gen     *atomic.Uint64  // counts the key sets stored
	cancel  context.CancelFunc
}

func newJWKSKeys(url string, client *http.Client, refresh, minRefresh time.Duration, logger *slog.Logger) (*jwksKeys, error) {
	ctx, cancel := context.WithCancel(context.Background())
	gen := new(atomic.Uint64)
	failed := func(ctx context.Context, err error) {
		if logger != nil {
			logger.LogAttrs(ctx, slog.LevelWarn, "JWKS fetch failed; keeping the keys fetched before",
				slog.String("url", url), slog.String("error", err.Error()))
		}
	}
	fetched, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    jwksClient(client),
		Ctx:                       ctx,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       failed,
		RefreshInterval:           refresh,
		Storage:                   usableKeys{jwkset.NewMemoryStorage(), gen},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:         map[string]jwkset.Storage{url: fetched},
		RateLimitWaitMax: jwksFetchTimeout, // bounds the fetch for an unknown key ID
		// Every fetch for an unknown key ID is allowed here: unknown
		// rations them without making requests queue for their turn.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		cancel()
		return nil, err
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: storage})
	if err != nil {
		cancel()
		return nil, err
	}
	j := &jwksKeys{fetched: fetched, client: storage, kf: kf, unknown: rate.NewLimiter(rate.Every(minRefresh), 1), gen: gen, cancel: cancel}
	j.unknown.Allow() // the fetch at start counts
	return j, nil
}

// keys returns the fetched keys that may verify t: the one with its key
// ID, or all of them when it names none. A key ID not among them, or no
// key at all, makes the set be fetched again first, unless the last such
// fetch was less than JWKSMinRefresh ago.
func (j *jwksKeys) keys(ctx context.Context, t *jwt.Token, kid string) []jwt.VerificationKey {
	if kid != "" {
		if _, err := j.fetched.KeyRead(ctx, kid); errors.Is(err, jwkset.ErrKeyNotFound) && !j.unknown.Allow() {
			return nil
		}
	} else if all, err := j.fetched.KeyReadAll(ctx); err == nil && len(all) == 0 && j.unknown.Allow() {
		_, _ = j.client.KeyRead(ctx, "") // none fetched yet: a read that misses fetches the set
	}
	got, err := j.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil // no such key, or one whose "alg" is another
	}
	if set, ok := got.(jwt.VerificationKeySet); ok {
		return set.Keys
	}
	return []jwt.VerificationKey{got}
}

// generation changes whenever a fetch stores a key set.
func (j *jwksKeys) generation() uint64 { return j.gen.Load() }

func (j *jwksKeys) close() { j.cancel() }

// usableKeys stores a fetched key set, keeping only the keys that may
// verify signatures (see verificationKey). A set with none of them, or
// with more than MaxJWKSKeys keys, is refused, which keeps the keys of
// the last good fetch. gen counts the sets stored.
type usableKeys struct {
	jwkset.Storage
	gen *atomic.Uint64
}

func (s usableKeys) KeyReplaceAll(ctx context.Context, set []jwkset.JWK) error {
	if len(set) > MaxJWKSKeys {
		return fmt.Errorf("middleware: JWKS: %d keys, at most %d", len(set), MaxJWKSKeys)
	}
	keep := make([]jwkset.JWK, 0, len(set))
	for _, j := range set {
		if _, err := verificationKey(j); err == nil {
			keep = append(keep, j)
		}
	}
	if len(keep) == 0 {
		return errors.New("middleware: JWKS: no usable key")
	}
	// Counted before and after: a token verified while the keys change
	// is never remembered for the new set.
	s.gen.Add(1)
	defer s.gen.Add(1)
	return s.Storage.KeyReplaceAll(ctx, keep)
}

// jwksClient returns a copy of c (http.DefaultClient when nil) that reads
// at most MaxJWKSSize bytes of a response and follows a redirect only to
// a URL the JWKSURL rule allows, and from https only to https.
func jwksClient(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cc := *c
	rt := cc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cc.Transport = limitBody{rt}
	next := cc.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		err := checkJWKSURL(req.URL.String())
		if err == nil && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			err = errors.New("a redirect from https to " + req.URL.Scheme)
		}
		if err != nil {
			return fmt.Errorf("middleware: JWKS: redirect refused: %w", err)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("middleware: JWKS: stopped after 10 redirects")
		}
		return nil
	}
	return &cc
}

// limitBody makes reading more than MaxJWKSSize bytes of a response body
// fail.
type limitBody struct{ http.RoundTripper }

func (t limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(r)
	if err == nil {
		resp.Body = http.MaxBytesReader(nil, resp.Body, MaxJWKSSize)
	}
	return resp, err
}
