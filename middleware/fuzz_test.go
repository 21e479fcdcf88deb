package middleware_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/trace"
)

// FuzzJWT feeds token strings to the verifier and the middleware. No
// input may panic; the middleware answers 401 or lets the request through
// with claims, and the verifier gives claims only for a token that jwt's
// own parser, given the same keys and no further checks, also accepts: a
// token not signed with a configured key never gets claims. (A Bearer
// header is never anonymous.)
func FuzzJWT(f *testing.F) {
	now := time.Now()
	valid := sign(f, jwt.SigningMethodHS256, secret, "", claims())
	parts := strings.Split(valid, ".")
	for _, s := range []string{
		valid,
		sign(f, jwt.SigningMethodHS512, secret, "k", claims("aud", []string{"a"})),
		sign(f, jwt.SigningMethodEdDSA, edKey(), "", claims()),
		sign(f, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}),
		sign(f, jwt.SigningMethodHS256, secret2, "", claims()),
		sign(f, jwt.SigningMethodHS256, publicPEM(f, edPublic()), "", claims()),
		b64(`{"alg":"none"}`) + "." + parts[1] + ".",
		b64(`{"alg":"HS256","crit":["x"]}`) + "." + parts[1] + "." + parts[2],
		parts[0] + "." + b64(`{"sub":"admin"}`) + "." + parts[2],
		"", ".", "..", "...", "a.b.c", "eyJ.eyJ.", "Bearer " + valid, valid + " ", " " + valid,
		valid + "=", strings.ToUpper(valid), strings.Repeat("A", 100),
	} {
		f.Add(s)
	}
	keys := []middleware.JWTKey{{Key: secret}, {Key: edPublic()}}
	v, err := middleware.NewJWTVerifier(middleware.JWTOptions{Keys: keys})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	oracle := jwt.NewParser(jwt.WithValidMethods([]string{"HS256", "HS384", "HS512", "EdDSA"}), jwt.WithLeeway(middleware.DefaultJWTLeeway), jwt.WithJSONNumber())
	keyFunc := func(tok *jwt.Token) (any, error) {
		if strings.HasPrefix(tok.Method.Alg(), "HS") {
			return secret, nil
		}
		return edPublic(), nil
	}
	h := middleware.JWT(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := reqctx.Claims(r.Context()); ok {
			w.WriteHeader(http.StatusAccepted) // authenticated
		}
	}))

	f.Fuzz(func(t *testing.T, token string) {
		claims, raw, err := v.Verify(context.Background(), token)
		// Again: the same answer.
		c2, raw2, err2 := v.Verify(context.Background(), token)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() ||
			!reflect.DeepEqual(claims, c2) || !bytes.Equal(raw, raw2) {
			t.Fatalf("Verify(%q) again: %v, %s, %v; first call: %v, %s, %v", token, c2, raw2, err2, claims, raw, err)
		}
		if err == nil {
			if claims == nil || raw == nil {
				t.Fatalf("Verify(%q): no error, claims %v, raw %q", token, claims, raw)
			}
			if _, err := oracle.Parse(token, keyFunc); err != nil {
				t.Fatalf("Verify(%q) accepted a token jwt rejects: %v", token, err)
			}
			if strings.ContainsAny(string(raw), "\r\n") {
				t.Fatalf("raw claims %q hold a line break", raw)
			}
		}

		req := httptest.NewRequest("POST", "/fn/s/f", nil)
		req.Header["Authorization"] = []string{"Bearer " + token}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusAccepted:
			// The middleware trims the blanks around the token, as HTTP does.
			if _, _, err := v.Verify(context.Background(), strings.Trim(token, " \t")); err != nil {
				t.Fatalf("middleware authenticated %q, which Verify rejects: %v", token, err)
			}
		case http.StatusUnauthorized:
			if e, _, perr := transport.ParseHTTPError(w.Code, w.Body.Bytes()); perr != nil || e.Code() != transport.CodeUnauthenticated {
				t.Fatalf("401 body %q", w.Body)
			}
		default:
			t.Fatalf("token %q: status %d", token, w.Code)
		}
	})
}

// FuzzParseJWKS: no input panics, and every key ParseJWKS returns is one
// NewJWTVerifier accepts.
func FuzzParseJWKS(f *testing.F) {
	f.Add(jwks(rsaJWK("r", &rsaKey().PublicKey), ecJWK("e", &p256Key().PublicKey), edJWK("d", edPublic())))
	f.Add(jwks(ecJWK("e", &p521Key().PublicKey)))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS256","use":"sig","key_ops":["verify"]}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := middleware.ParseJWKS(data)
		if err != nil {
			if keys != nil {
				t.Fatalf("keys %v with error %v", keys, err)
			}
			return
		}
		if len(keys) == 0 || len(keys) > middleware.MaxJWKSKeys {
			t.Fatalf("%d keys without an error", len(keys))
		}
		v, err := middleware.NewJWTVerifier(middleware.JWTOptions{Keys: keys})
		if err != nil {
			t.Fatalf("NewJWTVerifier rejects keys from ParseJWKS: %v", err)
		}
		v.Close()
	})
}

// FuzzRequestID: the ID a response carries is the inbound one exactly when
// reqctx.ValidRequestID accepts it, and is always well-formed.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"", "abc", "0190f0a2-7b6e-7c3e-9f55-0d1e2f3a4b5c", "a b", "a\nb", strings.Repeat("x", 65), "é", "a=b+c/d:e.f_g-h"} {
		f.Add(s)
	}
	h := middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := reqctx.RequestID(r.Context())
		w.Write([]byte(id))
	}))
	f.Fuzz(func(t *testing.T, in string) {
		valid := reqctx.ValidRequestID(in)
		if valid && (len(in) == 0 || len(in) > reqctx.MaxRequestIDLen || strings.ContainsAny(in, " \t\r\n\"'\\<>;,")) {
			t.Fatalf("reqctx.ValidRequestID(%q) = true", in)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.Header[transport.HeaderXRequestID] = []string{in}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		got := w.Header().Get(transport.HeaderXRequestID)
		if got != w.Body.String() || !reqctx.ValidRequestID(got) {
			t.Fatalf("inbound %q: header %q, context %q", in, got, w.Body)
		}
		if (got == in) != valid {
			t.Fatalf("inbound %q (valid %v): got %q", in, valid, got)
		}
	})
}

// FuzzTraceState: whatever tracestate a client sends, Tracing carries on
// at most MaxTraceStateLen characters of it, a tracestate OpenTelemetry
// accepts, and one within the bound unchanged.
func FuzzTraceState(f *testing.F) {
	for _, s := range []string{"", "a=1", "a=1,b=2", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", "a=" + strings.Repeat("v", 250) + ",b=" + strings.Repeat("w", 250) + ",c=1", "t@s=1,,x=2", "A=1", "a=1,a=2"} {
		f.Add(s)
	}
	var got string
	h := middleware.Tracing(middleware.TracingOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = trace.SpanContextFromContext(r.Context()).TraceState().String()
	}))
	f.Fuzz(func(t *testing.T, state string) {
		req := httptest.NewRequest("POST", "/", nil)
		req.Header["Traceparent"] = []string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
		req.Header["Tracestate"] = []string{state}
		got = ""
		h.ServeHTTP(httptest.NewRecorder(), req)
		if len(got) > middleware.MaxTraceStateLen {
			t.Fatalf("tracestate of %d characters carried on", len(got))
		}
		if _, err := trace.ParseTraceState(got); err != nil {
			t.Fatalf("carried on %q, which is not a valid tracestate: %v", got, err)
		}
		if in, err := trace.ParseTraceState(state); err == nil && len(in.String()) <= middleware.MaxTraceStateLen && got != in.String() {
			t.Fatalf("tracestate %q within the bound became %q", state, got)
		}
	})
}
