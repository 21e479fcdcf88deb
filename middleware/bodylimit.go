package middleware

import (
	"net/http"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// BodyLimit limits request bodies to n bytes. It is the one place the
// limit is set: it also puts n in the request's context
// (reqctx.WithMaxBodyBytes), from which every funcmesh handler that reads
// the body (the gateway, the authz middleware, the async, event and Space
// Cloud handlers) takes its bound. Without it they read at most
// reqctx.DefaultMaxBodyBytes (the gateway: what the broker carries).
//
// A request that declares a longer body in its Content-Length is answered
// at once with 413 and the JSON error body of transport.WriteHTTPError
// (code "too_large"); the next handler does not run. Any other body (a
// shorter declared length, or chunked with no length) is wrapped with
// http.MaxBytesReader, so a handler that reads past n bytes gets an error
// that is an *http.MaxBytesError. The middleware cannot know when, or
// whether, a handler reads, so mapping that error to 413 is the handler's
// job:
//
//	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
//		transport.WriteHTTPError(w, transport.NewError(transport.CodeTooLarge, "request body too large"))
//	}
//
// funcmesh's gateway and authz middleware do this. BodyLimit panics if n is
// not positive.
func BodyLimit(n int64) func(http.Handler) http.Handler {
	if n <= 0 {
		panic("middleware: BodyLimit: the limit must be positive")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				transport.WriteHTTPError(w, transport.NewError(transport.CodeTooLarge, transport.DefaultMessage(transport.CodeTooLarge)))
				return
			}
			r = r.WithContext(reqctx.WithMaxBodyBytes(r.Context(), n))
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, n)
			}
			next.ServeHTTP(w, r)
		})
	}
}
