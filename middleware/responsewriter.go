package middleware

import (
	"bufio"
	"net"
	"net/http"
)

// responseWriter is the one wrapper the middleware in this package put
// around an http.ResponseWriter to learn what the handler wrote: the
// status, the number of body bytes, and whether the response has started
// (after which a middleware can no longer write an error of its own).
//
// AccessLog, Metrics, Tracing and Recover share it: [wrapResponseWriter]
// returns the writer it is given when that is already a *responseWriter,
// so a chain of them wraps the response once.
//
// It implements Unwrap, so http.ResponseController reaches the server's
// writer for deadlines and full duplex, and it implements Flush, FlushError
// and Hijack itself so that handlers which type-assert http.Flusher or
// http.Hijacker keep working, and so that a flush or a hijack counts as the
// response having started.
type responseWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	hijacked    bool
}

// wrapResponseWriter returns w as a *responseWriter, wrapping it only when
// it is not one already.
func wrapResponseWriter(w http.ResponseWriter) *responseWriter {
	if rw, ok := w.(*responseWriter); ok {
		return rw
	}
	return &responseWriter{ResponseWriter: w}
}

// WriteHeader records the first final status and passes every call on.
// Informational statuses (1xx other than 101) may be sent any number of
// times before the final one and do not start the response.
func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader && (code < 100 || code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 when nothing was written before, and
// counts the bytes written.
func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.status = http.StatusOK
		w.wroteHeader = true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// FlushError flushes the wrapped writer, which sends the header (200 unless
// set) if it was not sent yet. http.ResponseController prefers it to Flush.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.status = http.StatusOK
		w.wroteHeader = true
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher for handlers that type-assert it; a writer
// underneath that cannot flush makes it do nothing.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// Hijack implements http.Hijacker for handlers that type-assert it; it
// fails with an error wrapping http.ErrNotSupported when the writer
// underneath cannot be hijacked (HTTP/2).
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
		if !w.wroteHeader {
			w.status = http.StatusSwitchingProtocols
			w.wroteHeader = true
		}
	}
	return c, brw, err
}

// started reports whether the header has gone out (or the connection was
// hijacked), after which nobody may write another status.
func (w *responseWriter) started() bool { return w.wroteHeader }

// statusCode returns the status the client got: the recorded one, or 200
// when the handler returned without writing (net/http then sends 200).
func (w *responseWriter) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}
