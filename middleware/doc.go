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
//     incoming W3C trace context (tracestate cut to 512 characters), with
//     the provider you pass.
//   - [Recover]: a panic becomes a 500 JSON error and a log record.
//   - [CORS]: github.com/rs/cors with safe defaults, for web pages on other
//     origins.
//   - [BodyLimit]: 413 for bodies over the limit.
//   - [JWT] with a [JWTVerifier]: verified claims in the context; no token
//     means anonymous, a bad one 401; a cookie token in a cross-origin
//     request 403.
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
//	403 permission_denied   JWT: a token from the cookie in a cross-origin
//	                        request (see JWTOptions.TrustedOrigins)
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
// never serve as an HMAC secret. Tokens are parsed and checked by
// github.com/golang-jwt/jwt/v5; the key set of a JWKS URL is fetched and
// kept by github.com/MicahParks/jwkset and keyfunc/v3.
//
// # Cookies and other sites
//
// A browser sends a site's cookies with the requests other sites' pages
// make to it, forms included, so a token in a cookie would let any page
// run functions as the user. [JWT] therefore refuses a cookie token in a
// cross-origin request that is not GET, HEAD or OPTIONS, with Go's
// [http.CrossOriginProtection] (the browser's Sec-Fetch-Site header, or
// its Origin against the Host). Pages of other origins that should call
// with the cookie are listed in [JWTOptions].TrustedOrigins. Requests
// with neither header come from clients that are not browsers and are
// not affected; tokens in the Authorization header never are, since a
// page cannot make a browser send one to another site.
package middleware
