package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// Recover turns a panic in a later handler into a 500 response with the
// JSON error body of transport.WriteHTTPError (code "internal", no detail
// of the panic). When the response has already started it cannot change
// its status, so it aborts the response instead (by panicking with
// http.ErrAbortHandler), and the client sees a broken connection rather
// than a truncated body that looks complete. The panic value and the stack
// go to logger at level Error, with the method, path and request ID; a nil
// logger reports nothing.
//
// A panic with http.ErrAbortHandler is passed on untouched: it is how a
// handler asks net/http to abort the response quietly.
//
// Put Recover after AccessLog, Metrics and Tracing, so that they record the
// 500 it writes, and before everything else.
func Recover(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := wrapResponseWriter(w)
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				if logger != nil {
					logger.LogAttrs(r.Context(), slog.LevelError, "panic in HTTP handler",
						slog.String("panic", fmt.Sprint(p)),
						slog.String("method", r.Method),
						slog.String("path", r.URL.Path),
						slog.String("request_id", requestID(r.Context(), rw)),
						slog.String("stack", string(debug.Stack())),
					)
				}
				if rw.started() {
					// Ending the response normally would pass a truncated body off as
					// a whole one; aborting makes the client see the failure.
					panic(http.ErrAbortHandler)
				}
				transport.WriteHTTPError(rw, transport.NewError(transport.CodeInternal, transport.DefaultMessage(transport.CodeInternal)))
			}()
			next.ServeHTTP(rw, r)
		})
	}
}

// requestID returns the request ID from ctx, or else from the response
// header, where RequestID put it when it runs later in the chain.
func requestID(ctx context.Context, w http.ResponseWriter) string {
	if id, ok := reqctx.RequestID(ctx); ok {
		return id
	}
	return w.Header().Get(transport.HeaderXRequestID)
}
