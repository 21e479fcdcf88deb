package middleware

import (
	"net/http"

	"github.com/funcmesh/funcmesh/transport"
	"github.com/nats-io/nuid"
)

// MaxRequestIDLen is the longest inbound X-Request-Id that [RequestID]
// accepts.
const MaxRequestIDLen = 64

// RequestID gives every request an ID: the inbound X-Request-Id header when
// [ValidRequestID] accepts it (so an ID set by a proxy or the browser in
// front follows the request), or else a new one, 22 random-looking base62
// characters (a NATS NUID; unique, not secret). The ID goes in the request's
// context, read with [RequestIDFromContext], and in the X-Request-Id
// response header, set before the next handler runs so that every error
// body written with transport.WriteHTTPError carries it too.
//
// Put it first in the chain, so that everything after it can read the ID.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(transport.RequestIDHeader)
		if !ValidRequestID(id) {
			id = nuid.Next()
		}
		w.Header().Set(transport.RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

// ValidRequestID reports whether s is acceptable as a request ID from
// outside: 1 to [MaxRequestIDLen] bytes of ASCII letters, digits and
// - _ . : + / = (enough for UUIDs, ULIDs, hex and base64 trace IDs), so
// an ID can go into a header, a log line, a JSON body or a NATS header
// unescaped, and can never smuggle a line break, a quote or a space.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}
