package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkJWTVerify measures Verify alone, in full (the cache off): a
// typical access token of an identity provider, one key configured, for
// each algorithm; "cached" is HS256 with the token remembered.
func BenchmarkJWTVerify(b *testing.B) {
	for _, bc := range []struct {
		method  jwt.SigningMethod
		signKey any
		key     any
	}{
		{jwt.SigningMethodHS256, secret, secret},
		{jwt.SigningMethodRS256, rsaKey(), &rsaKey().PublicKey},
		{jwt.SigningMethodES256, p256Key(), &p256Key().PublicKey},
		{jwt.SigningMethodEdDSA, edKey(), edPublic()},
	} {
		b.Run(bc.method.Alg(), func(b *testing.B) {
			v := newVerifier(b, middleware.JWTOptions{
				Keys:      []middleware.JWTKey{{Key: bc.key}},
				Issuer:    "https://idp.example.com",
				Audience:  []string{"funcmesh"},
				CacheSize: -1,
			})
			tok := sign(b, bc.method, bc.signKey, "", claims("iss", "https://idp.example.com", "aud", "funcmesh",
				"role", "admin", "tenant", "t1", "email", "u1@example.com"))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkJWTVerifyCached(b *testing.B) {
	v := newVerifier(b, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	tok := sign(b, jwt.SigningMethodHS256, secret, "", claims("role", "admin"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJWTMiddleware is Verify plus reading the header and putting the
// claims in the context.
func BenchmarkJWTMiddleware(b *testing.B) {
	v := newVerifier(b, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	h := middleware.JWT(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
	req.Header.Set("Authorization", "Bearer "+sign(b, jwt.SigningMethodHS256, secret, "", claims("role", "admin")))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

func BenchmarkRequestID(b *testing.B) {
	h := middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// BenchmarkChain is the recommended chain around an empty handler, with
// metrics, without a logger or a tracer provider.
func BenchmarkChain(b *testing.B) {
	v := newVerifier(b, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}})
	cors, err := middleware.CORS(middleware.CORSOptions{AllowedOrigins: []string{"https://app.example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	metrics, err := middleware.Metrics(prometheus.NewRegistry(), middleware.MetricsOptions{})
	if err != nil {
		b.Fatal(err)
	}
	chain := alice.New(middleware.RequestID, middleware.AccessLog(nil), metrics, middleware.Tracing(middleware.TracingOptions{}),
		middleware.Recover(nil), cors, middleware.BodyLimit(1<<20), middleware.JWT(v))
	h := chain.Then(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
	req.Header.Set("Authorization", "Bearer "+sign(b, jwt.SigningMethodHS256, secret, "", claims("role", "admin")))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
