package middleware

import (
	"net/http"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
	"github.com/nats-io/nuid"
)

// RequestID gives every request an ID: the inbound X-Request-Id header when
// [reqctx.ValidRequestID] accepts it (so an ID set by a proxy or the browser
// in front follows the request), or else a new one, 22 random-looking
// base62 characters (a NATS NUID; unique, not secret). The ID goes in the
// request's context, read with [reqctx.RequestID], and in the X-Request-Id
// response header, set before the next handler runs so that every error
// body written with transport.WriteHTTPError carries it too.
//
// Put it first in the chain, so that everything after it can read the ID.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(transport.HeaderXRequestID)
		if !reqctx.ValidRequestID(id) {
			id = nuid.Next()
		}
		w.Header().Set(transport.HeaderXRequestID, id)
		next.ServeHTTP(w, r.WithContext(reqctx.WithRequestID(r.Context(), id)))
	})
}
