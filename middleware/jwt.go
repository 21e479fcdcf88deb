package middleware

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/golang-jwt/jwt/v5"
)

// MaxJWTLen is the longest token [JWTVerifier.Verify] accepts, in bytes.
const MaxJWTLen = 16 << 10

// Defaults of [JWTOptions].
const (
	DefaultJWTLeeway      = 30 * time.Second
	DefaultJWKSRefresh    = 15 * time.Minute
	DefaultJWKSMinRefresh = 30 * time.Second
)

// JWTOptions configures a [JWTVerifier]. Keys, JWKSURL or both must be
// set; every other field's zero value is the default given with it.
type JWTOptions struct {
	// Keys verify tokens: HMAC secrets and public keys (see [JWTKey]).
	Keys []JWTKey

	// JWKSURL is a JSON Web Key Set to verify tokens with, as identity
	// providers publish (".../.well-known/jwks.json"), used alongside
	// Keys. It must be https, or http on a loopback address. The keys are
	// fetched when the verifier is made, again every JWKSRefresh, and when
	// a token names a key ID the verifier has not seen, at most once per
	// JWKSMinRefresh. When a fetch fails the keys fetched before stay in
	// use; a token whose key ID is not among them is rejected.
	JWKSURL string

	// JWKSRefresh is how often the key set is fetched again; 15 minutes
	// by default.
	JWKSRefresh time.Duration

	// JWKSMinRefresh is the least time between two fetches asked for by
	// unknown key IDs; 30 seconds by default. It bounds what a flood of
	// tokens with made-up key IDs can make the verifier do. After a failed
	// fetch the next periodic one comes after JWKSMinRefresh (at least a
	// second), doubling at each failure in a row up to JWKSRefresh.
	JWKSMinRefresh time.Duration

	// JWKSClient fetches the key set; http.DefaultClient by default. Each
	// fetch is bounded to 10 seconds.
	JWKSClient *http.Client

	// Algorithms is the allow-list of signature algorithms: any of HS256,
	// HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
	// ES512 and EdDSA. By default it is every algorithm one of Keys can
	// verify (HS* for a secret long enough, RS* and PS* for an RSA key,
	// the ES* of an ECDSA key's curve, EdDSA for Ed25519) and, with a
	// JWKSURL, every algorithm but HS*. "none" is never allowed, and
	// whatever the list says, a key verifies only the algorithms of its
	// own kind, so a public key can never be used as an HMAC secret.
	Algorithms []string

	// Issuer, when set, must be the token's "iss".
	Issuer string

	// Audience, when set, must hold one of the token's "aud" values.
	Audience []string

	// Leeway is the clock skew allowed when checking "exp" and "nbf"; 30
	// seconds by default; a negative value allows none.
	Leeway time.Duration

	// RequireExpiry rejects tokens without "exp".
	RequireExpiry bool

	// Cookie, when set, names a cookie that carries the token when the
	// request has no Authorization header.
	Cookie string

	// Logger gets why each token was rejected (level Debug) and failed key
	// set fetches (level Warn); nil means silent.
	Logger *slog.Logger

	// CacheSize is how many verified tokens the verifier remembers, so
	// that a token it has verified before costs a map lookup rather than a
	// signature check and a JSON decode: a client sends the same token on
	// every call until it expires, and an RSA or ECDSA signature takes
	// tens of microseconds to check. 0 means [DefaultJWTCacheSize] (1024);
	// a negative value turns the cache off.
	//
	// Only tokens that pass every check are remembered, keyed by the whole
	// token string. A remembered token is accepted again only while its
	// "exp" and "nbf" still hold, checked with the Leeway exactly as for a
	// new token, and only while the keys are those it was verified with: a
	// key set fetched from the JWKSURL that differs from the one before
	// (a key rotated or removed) and [JWTVerifier.Refresh] empty the
	// cache, in effect. Failures are never remembered.
	//
	// Memory: at most CacheSize tokens and at most CacheSize × 8 KiB in
	// all (8 MiB by default), counting for each token its text, its claims
	// JSON and its decoded claims map (an estimate that errs on the large
	// side); a token whose entry would take more than 64 KiB (a token near
	// [MaxJWTLen] with a large claims set; in a cache of fewer than 8
	// tokens, more than its whole budget) is verified in full each time.
	// When full, the cache drops entries at random; entries found expired
	// are dropped when met. Looking a token up takes no lock.
	//
	// A remembered token's claims map and raw JSON are the same values
	// for every request that carries it: they are read-only (see
	// [JWTVerifier.Verify]).
	CacheSize int
}

// JWTVerifier verifies JSON Web Tokens (RFC 7519) signed with the keys of
// its [JWTOptions]: the signature with an allowed algorithm and a key of
// the algorithm's kind, then "exp", "nbf", "iss" and "aud". Key IDs (the
// "kid" header) pick the key when present. Header parameters that point
// at keys elsewhere ("jku", "x5u", "jwk") are ignored, and a token with a
// "crit" header is rejected, since the verifier understands no
// extensions.
//
// It remembers the tokens it has verified, so that a token seen before is
// accepted again without a signature check while its time claims hold and
// the keys are unchanged (see [JWTOptions].CacheSize).
//
// A JWTVerifier is safe for concurrent use. Close it when done if it has a
// JWKSURL: that stops the goroutine which refreshes the key set.
type JWTVerifier struct {
	static    []verifyKey
	jwks      *jwksCache
	methods   map[string]jwt.SigningMethod
	validator *jwt.Validator
	leeway    time.Duration // the validator's
	cache     *tokenCache   // nil when off
	now       func() time.Time
	cookie    string
	logger    *slog.Logger
}

// NewJWTVerifier checks opts and returns a verifier. With a JWKSURL it
// starts fetching the key set in the background; tokens that arrive
// before the first fetch ends wait for it (see [JWTVerifier.Refresh] to
// wait for it yourself).
func NewJWTVerifier(opts JWTOptions) (*JWTVerifier, error) {
	if len(opts.Keys) == 0 && opts.JWKSURL == "" {
		return nil, errors.New("middleware: JWT: no Keys and no JWKSURL")
	}
	v := &JWTVerifier{
		cookie: opts.Cookie, logger: opts.Logger, methods: make(map[string]jwt.SigningMethod),
		now: time.Now, cache: newTokenCache(opts.CacheSize),
	}
	for i, k := range opts.Keys {
		vk, err := checkKey(k)
		if err != nil {
			return nil, fmt.Errorf("middleware: JWT: key %d: %w", i, err)
		}
		v.static = append(v.static, vk)
	}
	usable := func(alg string) bool {
		if opts.JWKSURL != "" && algKinds[alg] != kindHMAC {
			return true
		}
		for i := range v.static {
			if v.static[i].verifies(alg) {
				return true
			}
		}
		return false
	}
	if len(opts.Algorithms) == 0 {
		for _, alg := range algOrder {
			if usable(alg) {
				v.methods[alg] = signingMethod(alg)
			}
		}
	}
	for _, alg := range opts.Algorithms {
		switch {
		case strings.EqualFold(alg, "none"):
			return nil, errors.New(`middleware: JWT: algorithm "none" is never allowed`)
		case algKinds[alg] == 0:
			return nil, fmt.Errorf("middleware: JWT: unsupported algorithm %q", alg)
		case !usable(alg):
			return nil, fmt.Errorf("middleware: JWT: algorithm %s allowed but no key can verify it", alg)
		}
		v.methods[alg] = signingMethod(alg)
	}
	if opts.Cookie != "" && (&http.Cookie{Name: opts.Cookie, Value: "x"}).Valid() != nil {
		return nil, fmt.Errorf("middleware: JWT: invalid cookie name %q", opts.Cookie)
	}

	leeway := opts.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultJWTLeeway
	case leeway < 0:
		leeway = 0
	}
	v.leeway = leeway
	// The validator reads the time through v.now, as the cache does, so
	// that tests can move the clock of both.
	vopts := []jwt.ParserOption{jwt.WithLeeway(leeway), jwt.WithTimeFunc(func() time.Time { return v.now() })}
	if opts.Issuer != "" {
		vopts = append(vopts, jwt.WithIssuer(opts.Issuer))
	}
	if len(opts.Audience) > 0 {
		vopts = append(vopts, jwt.WithAudience(opts.Audience...))
	}
	if opts.RequireExpiry {
		vopts = append(vopts, jwt.WithExpirationRequired())
	}
	v.validator = jwt.NewValidator(vopts...)

	if opts.JWKSURL != "" {
		if err := checkJWKSURL(opts.JWKSURL); err != nil {
			return nil, fmt.Errorf("middleware: JWT: JWKSURL %q: %w", opts.JWKSURL, err)
		}
		client := opts.JWKSClient
		if client == nil {
			client = http.DefaultClient
		}
		refresh := cmp.Or(opts.JWKSRefresh, DefaultJWKSRefresh)
		minRefresh := min(cmp.Or(opts.JWKSMinRefresh, DefaultJWKSMinRefresh), refresh)
		v.jwks = newJWKSCache(opts.JWKSURL, client, refresh, minRefresh, opts.Logger)
	}
	return v, nil
}

func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("http is allowed on loopback addresses only: a key set fetched in the clear can be replaced on the way")
		}
	default:
		return errors.New("want an https URL")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// Close stops refreshing the key set of the JWKSURL; the keys fetched so
// far stay in use. It returns nil, and does nothing the second time.
func (v *JWTVerifier) Close() error {
	if v.jwks != nil {
		v.jwks.close()
	}
	return nil
}

// Refresh fetches the key set of the JWKSURL now (or waits for the fetch
// under way) and returns its error; it returns nil when there is no
// JWKSURL. Call it after [NewJWTVerifier] to make sure the keys are there
// before serving, or to pick up rotated keys at once.
//
// Refresh also empties the verified-token cache (see
// [JWTOptions].CacheSize), so that every token is checked again with the
// keys it fetched.
func (v *JWTVerifier) Refresh(ctx context.Context) error {
	if v.jwks == nil {
		return nil
	}
	err := v.jwks.refreshNow(ctx)
	if v.cache != nil {
		v.cache.clear()
	}
	return err
}

// segment decodes a token segment: unpadded base64url, with the unused
// bits of the last character zero, so each token has one spelling.
var segment = base64.RawURLEncoding.Strict()

// decodeSegment decodes a short segment, such as a token's header, into a
// string, without the intermediate allocations of DecodeString.
func decodeSegment(s string) (string, error) {
	var src [256]byte
	var dst [192]byte // 256 × 3/4
	if len(s) > len(src) {
		b, err := segment.DecodeString(s)
		return string(b), err
	}
	n, err := segment.Decode(dst[:], src[:copy(src[:], s)])
	if err != nil {
		return "", err
	}
	return string(dst[:n]), nil
}

// Verify checks token, a JWT in compact form, and returns its claims and
// raw, the claims as the JSON the token carries (compacted to one line if
// it had line breaks, so it can go in a header as is). Numbers in the
// claims are json.Number, as in transport.DecodeClaims, so large integers
// keep every digit.
//
// ctx bounds the wait when the token names a key ID not yet fetched from
// the JWKSURL. The error wraps one of jwt.ErrTokenMalformed,
// jwt.ErrTokenUnverifiable (algorithm not allowed, no key for it),
// jwt.ErrTokenSignatureInvalid or jwt.ErrTokenInvalidClaims (with
// jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenInvalidIssuer,
// jwt.ErrTokenInvalidAudience...). It never contains the token.
//
// A token verified before is answered from the verified-token cache (see
// [JWTOptions].CacheSize) as long as its time claims still hold and the
// keys have not changed: claims and raw are then the very map and slice
// returned the first time, shared with every other call for the same
// token. They must not be modified, by the caller or by anything the
// claims are passed on to.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (claims map[string]any, raw []byte, err error) {
	if len(token) > MaxJWTLen {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "longer than %d bytes", MaxJWTLen)
	}
	if v.cache != nil {
		if e := v.cache.get(token); e != nil {
			if e.gen == v.keyGen() && e.current(v.now()) {
				return e.claims, e.raw, nil
			}
			// Expired, or verified with keys since replaced: verify it
			// again, which gives the error a first verification would.
			v.cache.remove(e)
		}
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return nil, nil, tokenErr(jwt.ErrTokenMalformed, "a byte outside base64url")
		}
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "not three segments")
	}

	hs, err := decodeSegment(h)
	if err != nil {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "header: %v", err)
	}
	header, err := decodeJWTHeader(hs)
	if err != nil {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "header: %v", err)
	}
	if header.hasKid && !header.kidStr {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "kid is not a string")
	}
	if header.crit {
		return nil, nil, tokenErr(jwt.ErrTokenUnverifiable, "crit header")
	}
	alg, kid := header.alg, header.kid
	method := v.methods[alg]
	if method == nil {
		return nil, nil, tokenErr(jwt.ErrTokenUnverifiable, "algorithm %.20q not allowed", alg)
	}
	// The signature goes in a buffer on the stack (an HMAC is 64 bytes at
	// most, an RSA-4096 signature 512) unless it is longer.
	var (
		sigBuf [512]byte
		sigSrc [688]byte // base64 of 512 bytes, and then some
		sig    []byte
	)
	if segment.DecodedLen(len(s)) <= len(sigBuf) && len(s) <= len(sigSrc) {
		var n int
		n, err = segment.Decode(sigBuf[:], sigSrc[:copy(sigSrc[:], s)])
		sig = sigBuf[:n]
	} else {
		sig, err = segment.DecodeString(s)
	}
	if err != nil {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "signature: %v", err)
	}
	gen, err := v.verifySignature(ctx, method, alg, kid, token[:len(h)+1+len(p)], sig)
	if err != nil {
		return nil, nil, err
	}

	// Only now that the issuer's signature is checked are the claims read.
	raw, err = segment.DecodeString(p)
	if err != nil {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "claims: %v", err)
	}
	claims, decoded, err := decodeClaims(raw)
	if err != nil {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "claims: %v", err)
	}
	var (
		entry *verifiedToken
		vc    jwt.Claims = jwt.MapClaims(claims)
	)
	if v.cache != nil {
		// The entry the token will have in the cache; its seen field
		// notes the times the validator checks.
		entry = &verifiedToken{token: token, claims: claims, gen: gen, slot: -1}
		entry.seen.MapClaims = claims
		vc = &entry.seen
	}
	if err := v.validator.Validate(vc); err != nil {
		return nil, nil, fmt.Errorf("middleware: jwt: %w: %w", jwt.ErrTokenInvalidClaims, err)
	}
	if bytes.ContainsAny(raw, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, nil, tokenErr(jwt.ErrTokenMalformed, "claims: %v", err)
		}
		raw = buf.Bytes()
	}
	if entry != nil {
		entry.raw = raw
		v.remember(entry, decoded)
	}
	return claims, raw, nil
}

// remember puts e, a token that passed every check, in the cache; the
// claims took decoded bytes.
func (v *JWTVerifier) remember(e *verifiedToken, decoded int) {
	// The times the validator accepted, with its leeway and comparisons
	// (see verifiedToken.current).
	if exp := e.seen.exp; exp != nil {
		e.hasExp, e.expBefore = true, exp.Add(+v.leeway)
	}
	if nbf := e.seen.nbf; nbf != nil {
		e.hasNbf, e.nbfFrom = true, nbf.Add(-v.leeway)
	}
	e.seen = timeClaims{}
	e.size = entrySize(e.token, e.raw, decoded)
	v.cache.add(e)
}

// keyGen returns the generation of the keys fetched from the JWKS URL, 0
// when there is none or none fetched yet.
func (v *JWTVerifier) keyGen() uint64 {
	if v.jwks == nil {
		return 0
	}
	if ks := v.jwks.snapshot(); ks != nil {
		return ks.gen
	}
	return 0
}

// verifySignature checks sig with each key that may verify alg and kid,
// first fetching the key set again when kid is not among the keys. It
// returns the generation of the fetched keys it used.
func (v *JWTVerifier) verifySignature(ctx context.Context, method jwt.SigningMethod, alg, kid, signing string, sig []byte) (uint64, error) {
	var (
		fetched []verifyKey
		gen     uint64
	)
	if v.jwks != nil {
		ks := v.jwks.snapshot()
		if ks == nil || (kid != "" && !hasKeyID(v.static, kid) && !hasKeyID(ks.keys, kid)) {
			v.jwks.refreshFor(ctx)
			ks = v.jwks.snapshot()
		}
		if ks != nil {
			fetched, gen = ks.keys, ks.gen
		}
	}
	tried := false
	for _, keys := range [2][]verifyKey{v.static, fetched} {
		for i := range keys {
			k := &keys[i]
			if (kid != "" && k.id != "" && k.id != kid) || !k.verifies(alg) {
				continue
			}
			tried = true
			if k.verify(method, alg, signing, sig) {
				return gen, nil
			}
		}
	}
	if !tried {
		return 0, tokenErr(jwt.ErrTokenUnverifiable, "no %s key with kid %.64q", alg, kid)
	}
	return 0, tokenErr(jwt.ErrTokenSignatureInvalid, "%s signature does not verify", alg)
}

func hasKeyID(keys []verifyKey, kid string) bool {
	for i := range keys {
		if keys[i].id == kid {
			return true
		}
	}
	return false
}

func tokenErr(kind error, format string, args ...any) error {
	return fmt.Errorf("middleware: jwt: %w: "+format, append([]any{kind}, args...)...)
}

// JWT returns middleware that authenticates requests with v. The token is
// read from the Authorization header ("Bearer <token>", the scheme in any
// letter case) or, when the request has no Authorization header and
// JWTOptions.Cookie is set, from that cookie.
//
//   - No token (no header, another scheme such as Basic, no cookie): the
//     request goes on anonymous, with no claims in its context; the
//     authorization policy decides what an anonymous caller may do.
//   - A valid token: its claims go in the request's context
//     ([reqctx.Claims], [reqctx.ClaimsJSON]) and the request goes
//     on. The claims are read-only: requests with the same token share
//     them.
//   - Anything else (a token that fails [JWTVerifier.Verify], an empty
//     Bearer, two Authorization headers): 401 with
//     WWW-Authenticate: Bearer error="invalid_token" and the JSON error
//     body of transport.WriteHTTPError, code "unauthenticated", message
//     "invalid token". Why it failed goes to JWTOptions.Logger only.
//
// JWT panics if v is nil.
func JWT(v *JWTVerifier) func(http.Handler) http.Handler {
	if v == nil {
		panic("middleware: JWT: nil verifier")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, err := v.token(r)
			if err == nil && token == "" {
				next.ServeHTTP(w, r)
				return
			}
			var (
				claims map[string]any
				raw    []byte
			)
			if err == nil {
				claims, raw, err = v.Verify(r.Context(), token)
			}
			if err != nil {
				if v.logger != nil {
					v.logger.LogAttrs(r.Context(), slog.LevelDebug, "invalid token",
						slog.String("reason", err.Error()),
						slog.String("method", r.Method),
						slog.String("path", r.URL.Path),
						slog.String("request_id", requestID(r.Context(), w)))
				}
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				transport.WriteHTTPError(w, transport.NewError(transport.CodeUnauthenticated, "invalid token"))
				return
			}
			next.ServeHTTP(w, r.WithContext(reqctx.WithClaims(r.Context(), claims, raw)))
		})
	}
}

// token returns the request's token, "" when it has none.
func (v *JWTVerifier) token(r *http.Request) (string, error) {
	switch auth := r.Header.Values("Authorization"); len(auth) {
	case 0:
	case 1:
		scheme, tok, _ := strings.Cut(auth[0], " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", nil
		}
		if tok = strings.Trim(tok, " \t"); tok == "" {
			return "", errors.New("middleware: jwt: empty Bearer token")
		}
		return tok, nil
	default:
		return "", errors.New("middleware: jwt: more than one Authorization header")
	}
	if v.cookie != "" {
		if c, err := r.Cookie(v.cookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", nil
}
