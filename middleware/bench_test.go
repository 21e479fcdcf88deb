package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkJWTVerify measures Verify alone: a typical access token of an
// identity provider, one key configured. For each algorithm:
//
//   - uncached: the cache off (CacheSize -1): a full verification, as
//     before the cache existed;
//   - miss: the cache on, every token a new one (the cost of a first
//     verification, with the cache's lookup, insertion and eviction);
//   - cached: the same token again, answered from the cache;
//   - cached-parallel: likewise from GOMAXPROCS goroutines at once.
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
		opts := middleware.JWTOptions{
			Keys:     []middleware.JWTKey{{Key: bc.key}},
			Issuer:   "https://idp.example.com",
			Audience: []string{"funcmesh"},
		}
		token := func(i int) string {
			return sign(b, bc.method, bc.signKey, "", claims("iss", "https://idp.example.com", "aud", "funcmesh",
				"role", "admin", "tenant", "t1", "email", fmt.Sprintf("u%d@example.com", i)))
		}
		ctx := context.Background()
		b.Run(bc.method.Alg()+"/uncached", func(b *testing.B) {
			opts := opts
			opts.CacheSize = -1
			v := newVerifier(b, opts)
			tok := token(1)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.method.Alg()+"/miss", func(b *testing.B) {
			// 256 tokens through a cache of 16 evicting at random: the
			// chance that a token is still there when it comes again is
			// (15/16)^240, nil.
			opts := opts
			opts.CacheSize = 16
			v := newVerifier(b, opts)
			toks := make([]string, 256)
			for i := range toks {
				toks[i] = token(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, err := v.Verify(ctx, toks[i%len(toks)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(bc.method.Alg()+"/cached", func(b *testing.B) {
			v := newVerifier(b, opts)
			tok := token(1)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.method.Alg()+"/cached-parallel", func(b *testing.B) {
			v := newVerifier(b, opts)
			tok := token(1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := v.Verify(ctx, tok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkJWTMiddleware is Verify plus reading the header and putting the
// claims in the context, with the cache off (uncached) and on (cached).
func BenchmarkJWTMiddleware(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"uncached", -1}, {"cached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			v := newVerifier(b, middleware.JWTOptions{Keys: []middleware.JWTKey{{Key: secret}}, CacheSize: bc.size})
			h := middleware.JWT(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
			req.Header.Set("Authorization", "Bearer "+sign(b, jwt.SigningMethodHS256, secret, "", claims("role", "admin")))
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
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
