package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// exampleSecret stands in for the HS256 secret an app reads from its
// configuration (Space Cloud's "secret").
var exampleSecret = []byte("an-example-secret-of-32-bytes-at-least!")

// exampleToken is what a login endpoint would hand out.
func exampleToken(claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(exampleSecret)
	if err != nil {
		panic(err)
	}
	return s
}

// The recommended chain, in front of the funcmesh gateway (here a handler
// that echoes what the middleware put in the context).
func Example() {
	logger := slog.New(slog.DiscardHandler) // your app's logger
	registry := prometheus.NewRegistry()    // served with promhttp.HandlerFor
	tracerProvider := sdktrace.NewTracerProvider()
	defer tracerProvider.Shutdown(context.Background())

	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Key: exampleSecret}},
	})
	if err != nil {
		panic(err)
	}
	defer verifier.Close()
	metrics, err := middleware.Metrics(registry, middleware.MetricsOptions{})
	if err != nil {
		panic(err)
	}
	cors, err := middleware.CORS(middleware.CORSOptions{AllowedOrigins: []string{"https://app.example.com"}})
	if err != nil {
		panic(err)
	}

	chain := alice.New(
		middleware.RequestID,         // first: everything after it can use the ID
		middleware.AccessLog(logger), // these three see the final status,
		metrics,                      // including the 500 Recover writes
		middleware.Tracing(middleware.TracingOptions{TracerProvider: tracerProvider}),
		middleware.Recover(logger),
		cors, // answers preflights before the JWT check
		middleware.BodyLimit(1<<20),
		middleware.JWT(verifier),
	)
	gateway := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := reqctx.ClaimsJSON(r.Context())
		fmt.Fprintf(w, "%s/%s called with claims %s", r.PathValue("service"), r.PathValue("function"), claims)
	})
	mux := http.NewServeMux()
	// No method in the pattern: CORS must see the OPTIONS preflights.
	mux.Handle("/fn/{service}/{function}", chain.Then(gateway))

	for _, token := range []string{exampleToken(jwt.MapClaims{"sub": "u1"}), "forged"} {
		req := httptest.NewRequest("POST", "/fn/payments/charge", strings.NewReader(`{"amount":5}`))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		fmt.Println(w.Code, strings.Replace(w.Body.String(), w.Header().Get("X-Request-Id"), "<id>", 1))
	}
	// Output:
	// 200 payments/charge called with claims {"sub":"u1"}
	// 401 {"error":{"code":"unauthenticated","message":"invalid token","request_id":"<id>"}}
}

func ExampleRequestID() {
	h := middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := reqctx.RequestID(r.Context())
		fmt.Println("handler sees", id)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-Id", "req-from-the-proxy")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	fmt.Println("response header", w.Header().Get("X-Request-Id"))
	// Output:
	// handler sees req-from-the-proxy
	// response header req-from-the-proxy
}

func ExampleJWT() {
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys:   []middleware.JWTKey{{Key: exampleSecret}},
		Cookie: "session", // also read the token from this cookie
	})
	if err != nil {
		panic(err)
	}
	defer verifier.Close()
	h := middleware.JWT(verifier)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if claims, ok := reqctx.Claims(r.Context()); ok {
			fmt.Fprintln(w, "hello", claims["sub"])
			return
		}
		fmt.Fprintln(w, "hello, anonymous")
	}))
	for _, auth := range []string{"", "Bearer " + exampleToken(jwt.MapClaims{"sub": "u1"}), "Bearer x.y.z"} {
		req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		fmt.Print(w.Code, " ", w.Header().Get("WWW-Authenticate"), " ", w.Body.String())
	}
	// Output:
	// 200  hello, anonymous
	// 200  hello u1
	// 401 Bearer error="invalid_token" {"error":{"code":"unauthenticated","message":"invalid token"}}
}

func ExampleJWTVerifier_Verify() {
	pemKey := []byte(`-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----`)
	key, err := middleware.ParsePublicKeyPEM(pemKey)
	if err != nil {
		panic(err)
	}
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys:     []middleware.JWTKey{{ID: "2025-01", Key: key}},
		Issuer:   "https://idp.example.com",
		Audience: []string{"funcmesh"},
	})
	if err != nil {
		panic(err)
	}
	defer verifier.Close()

	// A token signed by someone else's key.
	forged := exampleToken(jwt.MapClaims{"sub": "admin", "iss": "https://idp.example.com", "aud": "funcmesh"})
	_, _, err = verifier.Verify(context.Background(), forged)
	fmt.Println(errors.Is(err, jwt.ErrTokenSignatureInvalid), err)
	// Output:
	// true middleware: jwt: token signature is invalid: signing method HS256 is invalid
}

func ExampleParseJWKS() {
	keys, err := middleware.ParseJWKS([]byte(`{"keys": [
		{"kty": "OKP", "crv": "Ed25519", "kid": "2025-01", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
		{"kty": "RSA", "use": "enc", "kid": "encryption", "n": "AQAB", "e": "AQAB"}
	]}`))
	if err != nil {
		panic(err)
	}
	for _, k := range keys {
		fmt.Printf("%s %T\n", k.ID, k.Key)
	}
	// Output:
	// 2025-01 ed25519.PublicKey
}

func ExampleRecover() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "stack" || a.Key == "request_id" {
				return slog.Attr{}
			}
			return a
		},
	}))
	h := middleware.Recover(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["x"]++ // a bug
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/fn/payments/charge", nil))
	fmt.Print(w.Code, " ", w.Body.String())
	// Output:
	// level=ERROR msg="panic in HTTP handler" panic="assignment to entry in nil map" method=POST path=/fn/payments/charge
	// 500 {"error":{"code":"internal","message":"internal error"}}
}

func ExampleBodyLimit() {
	h := middleware.BodyLimit(8)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			transport.WriteHTTPError(w, transport.NewError(transport.CodeTooLarge, "request body too large"))
			return
		}
		fmt.Fprintf(w, "read %q", body)
	}))
	for _, body := range []string{`{"a":1}`, `{"amount":500}`} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader(body)))
		fmt.Println(w.Code, w.Body.String())
	}
	// Output:
	// 200 read "{\"a\":1}"
	// 413 {"error":{"code":"too_large","message":"request body too large"}}
}

func ExampleCORS() {
	cors, err := middleware.CORS(middleware.CORSOptions{
		AllowedOrigins:   []string{"https://app.example.com"},
		AllowCredentials: true, // the token travels in a cookie
	})
	if err != nil {
		panic(err)
	}
	h := cors(http.NotFoundHandler())
	req := httptest.NewRequest("OPTIONS", "/fn/payments/charge", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	fmt.Println(w.Code, w.Header().Get("Access-Control-Allow-Origin"), w.Header().Get("Access-Control-Allow-Credentials"))
	// Output:
	// 204 https://app.example.com true
}

func ExampleAccessLog() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey, "duration", "remote":
				return slog.Attr{} // they change from run to run
			}
			return a
		},
	}))
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", middleware.RequestID(middleware.AccessLog(logger)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"ok":true}`)) }))))
	req := httptest.NewRequest("POST", "/fn/payments/charge?debug=1", nil)
	req.Header.Set("X-Request-Id", "req-1")
	mux.ServeHTTP(httptest.NewRecorder(), req)
	// Output:
	// level=INFO msg="http request" method=POST path=/fn/payments/charge status=200 bytes=11 request_id=req-1 route="POST /fn/{service}/{function}" service=payments function=charge
}

func ExampleMetrics() {
	registry := prometheus.NewRegistry()
	metrics, err := middleware.Metrics(registry, middleware.MetricsOptions{})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", metrics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))

	mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/fn/payments/charge", nil))
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "funcmesh_http_requests_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// funcmesh_http_requests_total{function="charge",route="POST /fn/{service}/{function}",service="payments",status="200"} 1
}

func ExampleTracing() {
	spans := tracetest.NewSpanRecorder()
	tracerProvider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tracerProvider.Shutdown(context.Background())

	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", middleware.Tracing(middleware.TracingOptions{TracerProvider: tracerProvider})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The mesh client finds the span here and carries the trace on.
			fmt.Println("handler in trace", trace.SpanFromContext(r.Context()).SpanContext().TraceID())
		})))
	req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	mux.ServeHTTP(httptest.NewRecorder(), req)

	s := spans.Ended()[0]
	fmt.Println(s.Name(), s.SpanKind(), "child of", s.Parent().SpanID())
	// Output:
	// handler in trace 4bf92f3577b34da6a3ce929d0e0e4736
	// POST /fn/{service}/{function} server child of 00f067aa0ba902b7
}
