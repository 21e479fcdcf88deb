package middleware_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/golang-jwt/jwt/v5"
)

func TestJWTVerifyAlgorithms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method  jwt.SigningMethod
		signKey any
		verify  any
	}{
		{jwt.SigningMethodHS256, secret, secret},
		{jwt.SigningMethodHS384, secret, secret},
		{jwt.SigningMethodHS512, secret, secret},
		{jwt.SigningMethodRS256, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodRS384, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodRS512, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodPS256, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodPS384, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodPS512, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodES256, p256Key(), &p256Key().PublicKey},
		{jwt.SigningMethodES384, p384Key(), &p384Key().PublicKey},
		{jwt.SigningMethodES512, p521Key(), &p521Key().PublicKey},
		{jwt.SigningMethodEdDSA, edKey(), edPublic()},
	}
	for _, tt := range tests {
		t.Run(tt.method.Alg(), func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: tt.verify}}})
			tok := sign(t, tt.method, tt.signKey, "", claims("role", "admin"))
			got, raw, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got["sub"] != "u1" || got["role"] != "admin" {
				t.Errorf("claims = %v; want sub u1, role admin", got)
			}
			var fromRaw map[string]any
			if err := json.Unmarshal(raw, &fromRaw); err != nil || fromRaw["sub"] != "u1" {
				t.Errorf("raw = %q (%v); want the claims JSON", raw, err)
			}
		})
	}
}

// TestJWTVerifyRaw checks that raw is the token's own payload, numbers keep
// their digits, and line breaks are compacted away.
func TestJWTVerifyRaw(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	exp := time.Now().Add(time.Hour).Unix()
	payload := `{"sub":"u1","id":12345678901234567890,"exp":` + jsonInt(exp) + `}`
	tok := signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256","typ":"JWT"}`, payload)
	claims, raw, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if string(raw) != payload {
		t.Errorf("raw = %s; want %s", raw, payload)
	}
	if n, ok := claims["id"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("id = %#v; want json.Number 12345678901234567890", claims["id"])
	}

	multiline := "{\n  \"sub\": \"u1\",\r\n  \"exp\": " + jsonInt(exp) + "\n}"
	tok = signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, multiline)
	_, raw, err = v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if want := `{"sub":"u1","exp":` + jsonInt(exp) + `}`; string(raw) != want {
		t.Errorf("raw = %q; want compacted %q", raw, want)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestJWTVerifyRejects(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rsaPub := &rsaKey().PublicKey
	hsOpts := middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}}
	rsOpts := middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: rsaPub}}}
	valid := sign(t, jwt.SigningMethodHS256, secret, "", claims())
	parts := strings.Split(valid, ".")
	// golang-jwt's error for an algorithm off the allow-list, as the
	// default list (the algorithms the keys can verify) leaves them.
	notAllowed := jwt.ErrTokenSignatureInvalid

	tests := []struct {
		name  string
		opts  middleware.JWTOptions
		token string
		want  error
	}{
		{"expired", hsOpts, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), jwt.ErrTokenExpired},
		{"not yet valid", hsOpts, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()}), jwt.ErrTokenNotValidYet},
		{"expired, no leeway", middleware.JWTOptions{Keys: hsOpts.Keys, Leeway: -1},
			sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": now.Add(-5 * time.Second).Unix()}), jwt.ErrTokenExpired},
		{"exp of the wrong type", hsOpts, sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": "tomorrow"}), jwt.ErrTokenInvalidClaims},
		{"no exp, required", middleware.JWTOptions{Keys: hsOpts.Keys, RequireExpiry: true},
			sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "u1"}), jwt.ErrTokenRequiredClaimMissing},
		{"wrong issuer", middleware.JWTOptions{Keys: hsOpts.Keys, Issuer: "https://idp.example.com"},
			sign(t, jwt.SigningMethodHS256, secret, "", claims("iss", "https://evil.example.com")), jwt.ErrTokenInvalidIssuer},
		{"no issuer, required", middleware.JWTOptions{Keys: hsOpts.Keys, Issuer: "https://idp.example.com"}, valid, jwt.ErrTokenRequiredClaimMissing},
		{"wrong audience", middleware.JWTOptions{Keys: hsOpts.Keys, Audience: []string{"funcmesh"}},
			sign(t, jwt.SigningMethodHS256, secret, "", claims("aud", []string{"other", "another"})), jwt.ErrTokenInvalidAudience},
		{"no audience, required", middleware.JWTOptions{Keys: hsOpts.Keys, Audience: []string{"funcmesh"}}, valid, jwt.ErrTokenRequiredClaimMissing},
		{"wrong HMAC secret", hsOpts, sign(t, jwt.SigningMethodHS256, secret2, "", claims()), jwt.ErrTokenSignatureInvalid},
		{"wrong RSA key", rsOpts, sign(t, jwt.SigningMethodRS256, rsaKey2(), "", claims()), jwt.ErrTokenSignatureInvalid},
		{"wrong Ed25519 key", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: edPublic()}}},
			sign(t, jwt.SigningMethodEdDSA, edKey2(), "", claims()), jwt.ErrTokenSignatureInvalid},
		{"tampered claims", hsOpts, parts[0] + "." + b64(`{"sub":"admin"}`) + "." + parts[2], jwt.ErrTokenSignatureInvalid},
		{"alg none, no signature", hsOpts, b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".", notAllowed},
		{"alg none, with signature", hsOpts, b64(`{"alg":"none"}`) + "." + parts[1] + "." + parts[2], notAllowed},
		{"alg None", hsOpts, b64(`{"alg":"None"}`) + "." + parts[1] + ".", jwt.ErrTokenUnverifiable},
		{"no alg", hsOpts, b64(`{"typ":"JWT"}`) + "." + parts[1] + "." + parts[2], jwt.ErrTokenUnverifiable},
		// The classic confusion: the verifier holds an RSA public key, the
		// attacker signs HS256 with that key's PEM text as the secret.
		{"HS256 signed with the RSA public key's PEM", rsOpts,
			sign(t, jwt.SigningMethodHS256, publicPEM(t, rsaPub), "", claims()), notAllowed},
		{"HS256 signed with the RSA modulus", rsOpts,
			sign(t, jwt.SigningMethodHS256, rsaPub.N.Bytes(), "", claims()), notAllowed},
		// Even with HS256 on the allow-list next to an HMAC secret, the RSA
		// key is never tried as a secret.
		{"HS256 with the RSA PEM, HS allowed", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: rsaPub}, {Key: secret}}},
			sign(t, jwt.SigningMethodHS256, publicPEM(t, rsaPub), "", claims()), jwt.ErrTokenSignatureInvalid},
		{"RS256 token, HS key only", hsOpts, sign(t, jwt.SigningMethodRS256, rsaKey(), "", claims()), notAllowed},
		{"ES256 token, P-384 key", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: &p384Key().PublicKey}}},
			sign(t, jwt.SigningMethodES256, p256Key(), "", claims()), notAllowed},
		{"algorithm off the allow-list", middleware.JWTOptions{Keys: rsOpts.Keys, Algorithms: []string{"RS256"}},
			sign(t, jwt.SigningMethodPS256, rsaKey(), "", claims()), notAllowed},
		{"key bound to another algorithm", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: rsaPub, Algorithm: "RS256"}}},
			sign(t, jwt.SigningMethodRS512, rsaKey(), "", claims()), notAllowed},
		{"unknown kid", middleware.JWTOptions{Keys: []middleware.JWTKey{{ID: "a", Key: secret}}},
			sign(t, jwt.SigningMethodHS256, secret, "b", claims()), jwt.ErrTokenUnverifiable},
		{"kid not a string", hsOpts, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256","kid":7}`, `{"sub":"u1"}`), jwt.ErrTokenMalformed},
		{"crit header", hsOpts, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256","crit":["b64"],"b64":false}`, `{"sub":"u1"}`), jwt.ErrTokenUnverifiable},
		{"claims not an object", hsOpts, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `["sub"]`), jwt.ErrTokenMalformed},
		{"claims null", hsOpts, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `null`), jwt.ErrTokenMalformed},
		{"data after the claims", hsOpts, signRaw(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256"}`, `{"sub":"u1"}}`), jwt.ErrTokenMalformed},
		{"header not JSON", hsOpts, signRaw(t, jwt.SigningMethodHS256, secret, `alg=HS256`, `{"sub":"u1"}`), jwt.ErrTokenMalformed},
		{"empty", hsOpts, "", jwt.ErrTokenMalformed},
		{"two segments", hsOpts, parts[0] + "." + parts[1], jwt.ErrTokenMalformed},
		{"four segments", hsOpts, valid + ".x", jwt.ErrTokenMalformed},
		{"padding", hsOpts, valid + "=", jwt.ErrTokenMalformed},
		{"standard base64 alphabet", hsOpts, strings.ReplaceAll(valid, "-", "+") + "+/", jwt.ErrTokenMalformed},
		{"space inside", hsOpts, parts[0] + ". " + parts[1] + "." + parts[2], jwt.ErrTokenMalformed},
		{"non-canonical base64 in the signature", hsOpts, parts[0] + "." + parts[1] + "." + flipLastBits(parts[2]), jwt.ErrTokenMalformed},
		{"signature of 600 bytes", hsOpts, parts[0] + "." + parts[1] + "." + b64(strings.Repeat("s", 600)), jwt.ErrTokenSignatureInvalid},
		{"signature of 600 bytes, bad base64", hsOpts, parts[0] + "." + parts[1] + "." + flipLastBits(b64(strings.Repeat("s", 599))), jwt.ErrTokenMalformed},
		{"signature of 512 bytes, bad base64", hsOpts, parts[0] + "." + parts[1] + "." + flipLastBits(b64(strings.Repeat("s", 511))), jwt.ErrTokenMalformed},
		{"too long", hsOpts, parts[0] + "." + strings.Repeat("A", middleware.MaxJWTLen) + "." + parts[2], jwt.ErrTokenMalformed},
		{"JWE (five segments)", hsOpts, "a.b.c.d.e", jwt.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.opts)
			claims, raw, err := v.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("Verify succeeded with claims %v; want an error", claims)
			}
			if claims != nil || raw != nil {
				t.Errorf("Verify returned claims %v, raw %q with error %v", claims, raw, err)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Verify error = %v; want one wrapping %v", err, tt.want)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

// flipLastBits changes the unused low bits of the last base64 character,
// which a lenient decoder ignores: the same signature spelled another way.
func flipLastBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

func TestJWTLeeway(t *testing.T) {
	t.Parallel()
	now := time.Now()
	expired10s := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()})
	future10s := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"nbf": now.Add(10 * time.Second).Unix()})
	expired2m := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": now.Add(-2 * time.Minute).Unix()})
	keys := []middleware.JWTKey{{Key: secret}}

	def := newVerifier(t, middleware.JWTOptions{Keys: keys})
	for name, tok := range map[string]string{"expired 10s ago": expired10s, "valid in 10s": future10s} {
		if _, _, err := def.Verify(context.Background(), tok); err != nil {
			t.Errorf("default leeway, %s: %v; want accepted", name, err)
		}
	}
	if _, _, err := def.Verify(context.Background(), expired2m); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("default leeway, expired 2m ago: %v; want ErrTokenExpired", err)
	}
	wide := newVerifier(t, middleware.JWTOptions{Keys: keys, Leeway: 5 * time.Minute})
	if _, _, err := wide.Verify(context.Background(), expired2m); err != nil {
		t.Errorf("5m leeway, expired 2m ago: %v; want accepted", err)
	}
	none := newVerifier(t, middleware.JWTOptions{Keys: keys, Leeway: -1})
	if _, _, err := none.Verify(context.Background(), future10s); !errors.Is(err, jwt.ErrTokenNotValidYet) {
		t.Errorf("no leeway, valid in 10s: %v; want ErrTokenNotValidYet", err)
	}
}

func TestJWTIssuerAudienceAccepted(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{
		Keys:     []middleware.JWTKey{{Key: &p256Key().PublicKey}},
		Issuer:   "https://idp.example.com",
		Audience: []string{"funcmesh", "other"},
	})
	for _, aud := range []any{"funcmesh", []string{"x", "funcmesh"}, []string{"other"}} {
		tok := sign(t, jwt.SigningMethodES256, p256Key(), "", claims("iss", "https://idp.example.com", "aud", aud))
		if _, _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("aud %v: %v; want accepted", aud, err)
		}
	}
}

func TestJWTKeyIDs(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{
		{ID: "rsa-1", Key: &rsaKey().PublicKey},
		{ID: "rsa-2", Key: &rsaKey2().PublicKey},
		{Key: edPublic()}, // no ID: matches any kid
	}})
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"kid picks key 1", sign(t, jwt.SigningMethodRS256, rsaKey(), "rsa-1", claims()), true},
		{"kid picks key 2", sign(t, jwt.SigningMethodRS256, rsaKey2(), "rsa-2", claims()), true},
		{"no kid tries both", sign(t, jwt.SigningMethodRS256, rsaKey2(), "", claims()), true},
		{"kid names the other key", sign(t, jwt.SigningMethodRS256, rsaKey(), "rsa-2", claims()), false},
		{"key without ID, any kid", sign(t, jwt.SigningMethodEdDSA, edKey(), "whatever", claims()), true},
	}
	for _, tt := range tests {
		_, _, err := v.Verify(context.Background(), tt.tok)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestNewJWTVerifierErrors(t *testing.T) {
	t.Parallel()
	small := must(rsa.GenerateKey(rand.Reader, 1024))
	p224 := must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
	rsaPub := &rsaKey().PublicKey
	tests := []struct {
		name string
		opts middleware.JWTOptions
		want string
	}{
		{"nothing to verify with", middleware.JWTOptions{}, "no Keys"},
		{"alg none", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Algorithms: []string{"none"}}, `"none"`},
		{"unknown alg", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Algorithms: []string{"HS1"}}, "unsupported algorithm"},
		{"HS256 allowed without a secret", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: rsaPub}}, Algorithms: []string{"RS256", "HS256"}}, "no key can verify"},
		{"HS512 with a 32-byte secret", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret[:32]}}, Algorithms: []string{"HS512"}}, "no key can verify"},
		{"short secret", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: []byte("short")}}}, "at least 32"},
		{"PEM as a secret", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: publicPEM(t, rsaPub)}}}, "PEM"},
		{"string secret", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: string(secret)}}}, "[]byte"},
		{"private key", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: rsaKey()}}}, "private key"},
		{"RSA 1024", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: &small.PublicKey}}}, "1024 bits"},
		{"P-224", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: &p224.PublicKey}}}, "P-224"},
		{"nil RSA key", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: (*rsa.PublicKey)(nil)}}}, "nil RSA"},
		{"key and algorithm of different kinds", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: rsaPub, Algorithm: "ES256"}}}, "does not go with"},
		{"unsupported key type", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: 42}}}, "unsupported key type"},
		{"JWKS over http to another host", middleware.JWTOptions{JWKSURL: "http://idp.example.com/jwks.json"}, "loopback"},
		{"JWKS not http", middleware.JWTOptions{JWKSURL: "file:///etc/jwks.json"}, "https"},
		{"bad cookie name", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Cookie: "a b"}, "cookie"},
		{"trusted origin with a path", middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, TrustedOrigins: []string{"https://app.example.com/x"}}, "trusted origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := middleware.NewJWTVerifier(tt.opts)
			if err == nil {
				v.Close()
				t.Fatalf("NewJWTVerifier succeeded; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	t.Parallel()
	for name, pub := range map[string]any{"RSA": &rsaKey().PublicKey, "EC": &p256Key().PublicKey, "Ed25519": edPublic()} {
		key, err := middleware.ParsePublicKeyPEM(publicPEM(t, pub))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !key.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Errorf("%s: got another key", name)
		}
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := middleware.ParsePublicKeyPEM([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKeyPEM(%q) succeeded; want an error", bad)
		}
	}
}

// serveJWT runs the JWT middleware in front of a handler that reports the
// claims it got.
func serveJWT(t *testing.T, v *middleware.JWTVerifier) *httptest.Server {
	t.Helper()
	h := middleware.RequestID(middleware.JWT(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := reqctx.ClaimsJSON(r.Context())
		if !ok {
			w.Write([]byte("anonymous"))
			return
		}
		w.Write(raw)
	})))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestJWTMiddleware(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, Cookie: "session"})
	srv := serveJWT(t, v)
	good := sign(t, jwt.SigningMethodHS256, secret, "", claims("role", "admin"))
	bad := sign(t, jwt.SigningMethodHS256, secret2, "", claims("role", "admin"))

	tests := []struct {
		name   string
		header []string // Authorization values
		cookie string
		status int
		body   string // substring for 200s
	}{
		{"no token", nil, "", 200, "anonymous"},
		{"Bearer", []string{"Bearer " + good}, "", 200, `"role":"admin"`},
		{"bearer, lower case", []string{"bearer " + good}, "", 200, `"role":"admin"`},
		{"extra spaces", []string{"Bearer   " + good + " "}, "", 200, `"role":"admin"`},
		{"Basic is not ours", []string{"Basic dTE6cHc="}, "", 200, "anonymous"},
		{"cookie", nil, good, 200, `"role":"admin"`},
		{"header wins over cookie", []string{"Bearer " + good}, bad, 200, `"role":"admin"`},
		{"bad signature", []string{"Bearer " + bad}, "", 401, ""},
		{"garbage", []string{"Bearer not.a.token"}, "", 401, ""},
		{"empty Bearer", []string{"Bearer "}, "", 401, ""},
		{"Bearer alone", []string{"Bearer"}, "", 401, ""},
		{"two Authorization headers", []string{"Bearer " + good, "Bearer " + good}, "", 401, ""},
		{"bad cookie", nil, bad, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL, nil)
			for _, h := range tt.header {
				req.Header.Add("Authorization", h)
			}
			if tt.cookie != "" {
				req.AddCookie(&http.Cookie{Name: "session", Value: tt.cookie})
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 200 {
				b, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(b), tt.body) {
					t.Errorf("body = %q; want it to contain %q", b, tt.body)
				}
				return
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			e, id := readError(t, resp)
			if e.Code() != transport.CodeUnauthenticated || e.Message() != "invalid token" {
				t.Errorf("error = %v; want unauthenticated: invalid token", e)
			}
			if id == "" || id != resp.Header.Get(transport.HeaderXRequestID) {
				t.Errorf("request_id = %q; want the X-Request-Id header %q", id, resp.Header.Get(transport.HeaderXRequestID))
			}
		})
	}
}

func TestJWTNilVerifierPanics(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "nil verifier") {
			t.Errorf("recover() = %v; want a nil verifier panic", p)
		}
	}()
	middleware.JWT(nil)
}
