// Package middleware holds the HTTP middleware a production app puts in
// front of the funcmesh gateway (or any other handler). Each piece is a
// plain func(http.Handler) http.Handler, so it composes with alice, chi and
// the standard library alike, and none keeps package-level state: its
// settings are its arguments or an options struct whose zero value is the
// default, and the constructors that can fail return an error.
//
// What the middleware learns about a request travels in its context through
// package reqctx ([reqctx.Claims], [reqctx.ClaimsJSON], [reqctx.RequestID]),
// so that the mesh and authz packages never need to know which middleware
// put it there, and never import this package.
//
// # The pieces
//
//   - [RequestID]: keeps a well-formed inbound X-Request-Id or makes one;
//     puts it in the context and the response header.
//   - [AccessLog]: one log/slog record per request (method, path, status,
//     bytes, duration, request ID, route, service, function); never
//     headers, query strings or bodies.
//   - [Metrics]: Prometheus request counter, latency histogram and
//     in-flight gauge, registered with the registry you pass.
//   - [Tracing]: an OpenTelemetry server span per request, continuing the
//     incoming W3C trace context, with the provider you pass.
//   - [Recover]: a panic becomes a 500 JSON error and a log record.
//   - [CORS]: github.com/rs/cors with safe defaults, for web pages on other
//     origins.
//   - [BodyLimit]: 413 for bodies over the limit.
//   - [JWT] with a [JWTVerifier]: verified claims in the context; no token
//     means anonymous, a bad one 401.
//
// # Order
//
// alice.New(m1, m2).Then(h) is m1(m2(h)): the first middleware listed sees
// the request first and the response last. The recommended order is
//
//	alice.New(
//		middleware.RequestID,         // first, so everything after has the ID
//		middleware.AccessLog(logger), // AccessLog, Metrics and Tracing before Recover,
//		metrics,                      // so they see the 500 it writes
//		middleware.Tracing(middleware.TracingOptions{TracerProvider: tp}),
//		middleware.Recover(logger),
//		cors,                         // answers preflights, which carry no token
//		middleware.BodyLimit(1<<20),  // not above the broker's max payload
//		middleware.JWT(verifier),
//	)
//
// mounted on a pattern without a method, "/fn/{service}/{function}", so
// that the preflight OPTIONS requests reach CORS and the path values reach
// the log, the metrics and the spans.
//
// # Errors
//
// Every error the middleware writes itself is the JSON body of
// transport.WriteHTTPError, {"error": {"code", "message", "request_id"}}:
//
//	401 unauthenticated     JWT: a token that fails verification (with
//	                        WWW-Authenticate: Bearer error="invalid_token")
//	413 too_large           BodyLimit: a declared Content-Length over the limit
//	500 internal            Recover: a panic before the response started
//
// A body without a declared length that turns out too long fails the
// handler's read with *http.MaxBytesError, which the handler maps to 413.
//
// # JWT keys
//
// A [JWTVerifier] verifies HS256/384/512 with secrets, RS256/384/512 and
// PS256/384/512 with RSA public keys, ES256/384/512 with ECDSA keys of the
// matching curve and EdDSA with Ed25519 keys, from [JWTOptions].Keys
// ([ParsePublicKeyPEM] reads PEM keys and certificates, [ParseJWKS] key
// set documents) and from a JWKS URL, fetched and refreshed in the
// background. Algorithms come from an allow-list that never holds "none",
// and a key only verifies algorithms of its own kind, so a public key can
// never serve as an HMAC secret.
//
// # Verified-token cache
//
// A client sends the same token on every call until it expires, so a
// [JWTVerifier] remembers the tokens it has verified, keyed by the whole
// token string: a token seen before costs a lookup of about 100 ns, with
// no allocation, instead of a signature check (2 µs for HS256, 35 µs for
// RS256, 75 µs for ES256) and a JSON decode. A remembered token is
// accepted only while its "exp" and "nbf" hold, checked with the leeway
// exactly as for a new one, and only while the keys are those it was
// verified with: a JWKS fetch that brings a different key set, and
// [JWTVerifier.Refresh], drop every remembered token. Failures are never
// remembered. The cache holds at most [JWTOptions].CacheSize tokens (1024
// by default; negative turns it off) and at most CacheSize × 8 KiB of
// memory (8 MiB by default); a token whose entry would take over 64 KiB
// is verified in full every time. The claims map of a remembered token is
// shared by every request that carries it: claims from
// [reqctx.Claims] are read-only.
package middleware
