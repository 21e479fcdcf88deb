package middleware

import (
	"bytes"
	"cmp"
	"context"
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
	// Keys. It must be https, or http on a loopback address, and a
	// redirect is followed only to a URL that keeps the rule (from https
	// only to https). The keys are fetched when the verifier is made
	// (NewJWTVerifier waits for that fetch, at most 10 seconds), again
	// every JWKSRefresh, and when a token names a key ID the verifier does
	// not hold, at most once per JWKSMinRefresh. A fetch that fails, or
	// brings no usable key, keeps the keys fetched before; a token whose
	// key ID is not among them is rejected. A key set is read up to
	// [MaxJWKSSize] bytes and [MaxJWKSKeys] keys.
	JWKSURL string

	// JWKSRefresh is how often the key set is fetched again; 15 minutes
	// by default.
	JWKSRefresh time.Duration

	// JWKSMinRefresh is the least time between two fetches asked for by
	// unknown key IDs; 30 seconds by default. It bounds what a flood of
	// tokens with made-up key IDs can make the verifier do: a token that
	// comes sooner is rejected without a fetch.
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
	// request has no Authorization header. A browser sends cookies with
	// requests that other sites' pages make, so the [JWT] middleware
	// refuses a token from the cookie in a cross-origin request (see
	// TrustedOrigins).
	Cookie string

	// TrustedOrigins are origins ("https://app.example.com") whose pages
	// may make cross-origin calls with the Cookie token: the origins a
	// [CORS] middleware with AllowCredentials allows. By default only
	// same-origin requests may use it.
	TrustedOrigins []string

	// Logger gets why each token was rejected (level Debug) and failed key
	// set fetches (level Warn); nil means silent.
	Logger *slog.Logger

	// CacheSize is how many verified tokens the verifier remembers, so
	// that a client sending the same token on every call has it verified
	// once: [DefaultJWTCacheSize] (1024) when 0, none when negative. A
	// token is remembered only when it passed every check and has an
	// "exp"; it is answered from memory until its "exp" (never later) and
	// while the keys are those that verified it (a key set fetched from
	// the JWKSURL since then ends that). The verifier keeps a copy of the
	// token, not of the request it came in, so memory is bounded by
	// CacheSize × (a token of at most [MaxJWTLen] and its claims).
	CacheSize int
}

// JWTVerifier verifies JSON Web Tokens (RFC 7519) signed with the keys of
// its [JWTOptions], with github.com/golang-jwt/jwt/v5: the signature with
// an allowed algorithm and a key of the algorithm's kind, then "exp",
// "nbf", "iss" and "aud". Key IDs (the "kid" header) pick the key when
// present. Header parameters that point at keys elsewhere ("jku", "x5u",
// "jwk") are ignored, and a token with a "crit" header is rejected, since
// the verifier understands no extensions.
//
// A JWTVerifier is safe for concurrent use. Close it when done if it has a
// JWKSURL: that stops the refreshing of the key set.
type JWTVerifier struct {
	static      []verifyKey
	jwks        *jwksKeys
	parser      *jwt.Parser
	cache       *tokenCache // nil when off
	now         func() time.Time
	cookie      string
	crossOrigin *http.CrossOriginProtection
	logger      *slog.Logger
}

// NewJWTVerifier checks opts and returns a verifier. With a JWKSURL it
// fetches the key set before it returns (at most 10 seconds); when that
// fetch fails, the verifier is returned all the same and fetches the set
// again as JWTOptions.JWKSURL says.
func NewJWTVerifier(opts JWTOptions) (*JWTVerifier, error) {
	if len(opts.Keys) == 0 && opts.JWKSURL == "" {
		return nil, errors.New("middleware: JWT: no Keys and no JWKSURL")
	}
	v := &JWTVerifier{
		cookie: opts.Cookie, logger: opts.Logger, crossOrigin: http.NewCrossOriginProtection(),
		cache: newTokenCache(opts.CacheSize), now: time.Now,
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
	var methods []string
	if len(opts.Algorithms) == 0 {
		for _, alg := range algOrder {
			if usable(alg) {
				methods = append(methods, alg)
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
		methods = append(methods, alg)
	}
	if opts.Cookie != "" && (&http.Cookie{Name: opts.Cookie, Value: "x"}).Valid() != nil {
		return nil, fmt.Errorf("middleware: JWT: invalid cookie name %q", opts.Cookie)
	}
	for _, o := range opts.TrustedOrigins {
		if err := v.crossOrigin.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("middleware: JWT: trusted origin: %w", err)
		}
	}

	leeway := opts.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultJWTLeeway
	case leeway < 0:
		leeway = 0
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }), // the cache's clock too
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if len(opts.Audience) > 0 {
		popts = append(popts, jwt.WithAudience(opts.Audience...))
	}
	if opts.RequireExpiry {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	v.parser = jwt.NewParser(popts...)

	if opts.JWKSURL != "" {
		if err := checkJWKSURL(opts.JWKSURL); err != nil {
			return nil, fmt.Errorf("middleware: JWT: JWKSURL %q: %w", opts.JWKSURL, err)
		}
		refresh := cmp.Or(opts.JWKSRefresh, DefaultJWKSRefresh)
		minRefresh := min(cmp.Or(opts.JWKSMinRefresh, DefaultJWKSMinRefresh), refresh)
		var err error
		v.jwks, err = newJWKSKeys(opts.JWKSURL, opts.JWKSClient, refresh, minRefresh, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("middleware: JWT: JWKSURL %q: %w", opts.JWKSURL, err)
		}
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

// Verify checks token, a JWT in compact form, and returns its claims and
// raw, the claims as the JSON the token carries (compacted to one line if
// it had line breaks, so it can go in a header as is). The claims must be
// one JSON object; numbers in them are json.Number, as in
// transport.DecodeClaims, so large integers keep every digit.
//
// ctx bounds the wait when the token names a key ID not yet fetched from
// the JWKSURL. The error wraps one of jwt.ErrTokenMalformed,
// jwt.ErrTokenUnverifiable (no key for the token),
// jwt.ErrTokenSignatureInvalid (also for an algorithm off the allow-list)
// or jwt.ErrTokenInvalidClaims (with jwt.ErrTokenExpired,
// jwt.ErrTokenNotValidYet, jwt.ErrTokenInvalidIssuer,
// jwt.ErrTokenInvalidAudience...). It never contains the token.
//
// A token verified before may be answered from memory (see
// [JWTOptions].CacheSize): claims and raw are then those returned the
// first time, shared with every call for the same token, and must not be
// modified.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (claims map[string]any, raw []byte, err error) {
	if len(token) > MaxJWTLen {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "longer than %d bytes", MaxJWTLen)
	}
	var keys uint64
	if v.jwks != nil {
		keys = v.jwks.generation()
	}
	if v.cache != nil {
		if e, ok := v.cache.get(token, v.now(), keys); ok {
			return e.claims, e.raw, nil
		}
	}
	mc := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, mc, func(t *jwt.Token) (any, error) { return v.keys(ctx, t) }); err != nil {
		return nil, nil, fmt.Errorf("middleware: jwt: %w", err)
	}
	// The parser decoded the claims with a json.Decoder, which takes null
	// for an empty object and ignores what follows the first value.
	payload := token[strings.IndexByte(token, '.')+1 : strings.LastIndexByte(token, '.')]
	raw, err = v.parser.DecodeSegment(payload)
	if err != nil {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "claims: %v", err)
	}
	if b := bytes.TrimLeft(raw, " \t\r\n"); len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return nil, nil, tokenErr(jwt.ErrTokenMalformed, "the claims are not one JSON object")
	}
	if bytes.ContainsAny(raw, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, nil, tokenErr(jwt.ErrTokenMalformed, "claims: %v", err)
		}
		raw = buf.Bytes()
	}
	if v.cache != nil {
		if exp, err := mc.GetExpirationTime(); err == nil && exp != nil {
			v.cache.put(token, cachedToken{claims: mc, raw: raw, exp: exp.Time, keys: keys})
		}
	}
	return mc, raw, nil
}

// keys returns the keys that may verify t: those of its key ID (or all,
// when it names none) that verify its algorithm, the static keys first.
func (v *JWTVerifier) keys(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, tokenErr(jwt.ErrTokenUnverifiable, "crit header")
	}
	var kid string
	if k, ok := t.Header["kid"]; ok {
		s, ok := k.(string)
		if !ok {
			return nil, tokenErr(jwt.ErrTokenMalformed, "kid is not a string")
		}
		kid = s
	}
	alg := t.Method.Alg()
	var set jwt.VerificationKeySet
	ownKID := false
	for _, k := range v.static {
		if kid != "" && k.id != "" && k.id != kid {
			continue
		}
		ownKID = ownKID || (kid != "" && k.id == kid)
		if k.verifies(alg) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if v.jwks != nil && !ownKID {
		for _, key := range v.jwks.keys(ctx, t, kid) {
			if k, err := checkKey(JWTKey{Key: key}); err == nil && k.verifies(alg) {
				set.Keys = append(set.Keys, k.key)
			}
		}
	}
	if len(set.Keys) == 0 {
		return nil, tokenErr(jwt.ErrTokenUnverifiable, "no %s key with kid %.64q", alg, kid)
	}
	return set, nil
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
//     ([reqctx.Claims], [reqctx.ClaimsJSON]) and the request goes on. The
//     claims are read-only: requests with the same token share them.
//   - A token from the cookie in a cross-origin request that is not
//     GET, HEAD or OPTIONS, as [http.CrossOriginProtection] tells it from
//     the browser's Sec-Fetch-Site or Origin header: 403 with code
//     "permission_denied", before the token is verified, unless the origin
//     is one of JWTOptions.TrustedOrigins. Clients that send neither
//     header (curl, servers) are not browsers and go on.
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
			token, fromCookie, err := v.token(r)
			if err == nil && token == "" {
				next.ServeHTTP(w, r)
				return
			}
			if err == nil && fromCookie {
				if err := v.crossOrigin.Check(r); err != nil {
					v.log(w, r, "cross-origin request with the cookie token", err)
					transport.WriteHTTPError(w, transport.NewError(transport.CodePermissionDenied, "cross-origin request refused"))
					return
				}
			}
			var (
				claims map[string]any
				raw    []byte
			)
			if err == nil {
				claims, raw, err = v.Verify(r.Context(), token)
			}
			if err != nil {
				v.log(w, r, "invalid token", err)
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				transport.WriteHTTPError(w, transport.NewError(transport.CodeUnauthenticated, "invalid token"))
				return
			}
			next.ServeHTTP(w, r.WithContext(reqctx.WithTokenClaims(r.Context(), claims, raw, token)))
		})
	}
}

func (v *JWTVerifier) log(w http.ResponseWriter, r *http.Request, msg string, err error) {
	if v.logger == nil {
		return
	}
	v.logger.LogAttrs(r.Context(), slog.LevelDebug, msg,
		slog.String("reason", err.Error()),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("request_id", requestID(r.Context(), w)))
}

// token returns the request's token, "" when it has none, and whether it
// came from the cookie.
func (v *JWTVerifier) token(r *http.Request) (string, bool, error) {
	switch auth := r.Header.Values("Authorization"); len(auth) {
	case 0:
	case 1:
		scheme, tok, _ := strings.Cut(auth[0], " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", false, nil
		}
		if tok = strings.Trim(tok, " \t"); tok == "" {
			return "", false, errors.New("middleware: jwt: empty Bearer token")
		}
		return tok, false, nil
	default:
		return "", false, errors.New("middleware: jwt: more than one Authorization header")
	}
	if v.cookie != "" {
		if c, err := r.Cookie(v.cookie); err == nil && c.Value != "" {
			return c.Value, true, nil
		}
	}
	return "", false, nil
}
