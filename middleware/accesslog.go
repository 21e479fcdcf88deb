package middleware

import (
	"log/slog"
	"net/http"
	"time"
)

// AccessLog logs one line per request to logger, at level Info, after the
// next handler returns:
//
//	method, path, status, bytes, duration, request_id, remote,
//	and route, service and function when known
//
// path is the URL path without the query string, which may carry secrets;
// request headers (with their tokens) and bodies are never logged. route is
// the mux pattern that matched, and service and function are the
// {service} and {function} path values, which the mux sets before the
// chain runs when the chain is mounted on a pattern. The request ID comes
// from [RequestID], before or after AccessLog in the chain.
//
// A request whose handler panics is logged with status 500 (or the status
// already sent) and panic=true, and the panic goes on. A nil logger makes
// AccessLog a no-op.
func AccessLog(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if logger == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rw := wrapResponseWriter(w)
			done := false
			defer func() {
				status := rw.statusCode()
				attrs := make([]slog.Attr, 0, 11)
				attrs = append(attrs,
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
				)
				if !done {
					if !rw.started() {
						status = http.StatusInternalServerError
					}
					attrs = append(attrs, slog.Bool("panic", true))
				}
				attrs = append(attrs,
					slog.Int("status", status),
					slog.Int64("bytes", rw.bytes),
					slog.Duration("duration", time.Since(start)),
					slog.String("request_id", requestID(r.Context(), rw)),
					slog.String("remote", r.RemoteAddr),
				)
				attrs = appendRoute(attrs, r)
				logger.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs...)
			}()
			next.ServeHTTP(rw, r)
			done = true
		})
	}
}

// appendRoute appends the matched pattern and the service and function
// path values, those that are set.
func appendRoute(attrs []slog.Attr, r *http.Request) []slog.Attr {
	if r.Pattern != "" {
		attrs = append(attrs, slog.String("route", r.Pattern))
	}
	if s := r.PathValue("service"); s != "" {
		attrs = append(attrs, slog.String("service", s))
	}
	if f := r.PathValue("function"); f != "" {
		attrs = append(attrs, slog.String("function", f))
	}
	return attrs
}
