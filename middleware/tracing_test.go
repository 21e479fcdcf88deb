package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	incomingTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingParent = "00f067aa0ba902b7"
	traceparent    = "00-" + incomingTrace + "-" + incomingParent + "-01"
)

// traced serves h behind Tracing on the gateway's pattern, with a span
// recorder, and returns the span context the handler saw.
func traced(t *testing.T, opts middleware.TracingOptions, status int, header http.Header) (trace.SpanContext, *httptest.ResponseRecorder) {
	t.Helper()
	var seen trace.SpanContext
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", middleware.RequestID(middleware.Tracing(opts)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			seen = trace.SpanFromContext(r.Context()).SpanContext()
			w.WriteHeader(status)
		}))))
	req := httptest.NewRequest("POST", "/fn/payments/charge", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	return seen, w
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTracingContinuesIncomingTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })

	seen, w := traced(t, middleware.TracingOptions{TracerProvider: tp}, 201, http.Header{"Traceparent": {traceparent}})
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans; want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "POST /fn/{service}/{function}" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q of kind %v; want the route, server", s.Name(), s.SpanKind())
	}
	if s.SpanContext().TraceID().String() != incomingTrace || s.Parent().SpanID().String() != incomingParent || !s.Parent().IsRemote() {
		t.Errorf("span in trace %s with parent %s; want trace %s, remote parent %s",
			s.SpanContext().TraceID(), s.Parent().SpanID(), incomingTrace, incomingParent)
	}
	if !seen.Equal(s.SpanContext()) {
		t.Errorf("the handler's context holds span %v; want the server span %v", seen, s.SpanContext())
	}
	a := attrs(s)
	for k, want := range map[attribute.Key]string{
		"http.request.method": "POST", "url.path": "/fn/payments/charge", "http.route": "POST /fn/{service}/{function}",
		"funcmesh.service": "payments", "funcmesh.function": "charge",
		"funcmesh.request_id": w.Header().Get(transport.HeaderXRequestID),
	} {
		if got := a[k].AsString(); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if got := a["http.response.status_code"].AsInt64(); got != 201 {
		t.Errorf("status attribute %d; want 201", got)
	}
	if s.Status().Code != codes.Unset {
		t.Errorf("status %v for a 201", s.Status())
	}
}

func TestTracingNewTraceAndErrors(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	for _, tt := range []struct {
		status int
		code   codes.Code
	}{{404, codes.Unset}, {503, codes.Error}} {
		traced(t, middleware.TracingOptions{TracerProvider: tp}, tt.status, nil)
		spans := rec.Ended()
		s := spans[len(spans)-1]
		if s.Parent().IsValid() {
			t.Errorf("status %d: span has parent %v; want a new trace", tt.status, s.Parent())
		}
		if s.Status().Code != tt.code {
			t.Errorf("status %d: span status %v; want %v", tt.status, s.Status().Code, tt.code)
		}
	}
}

// TestTracingWithoutProvider: no spans are made, but the incoming trace
// context still reaches the handler, for the mesh to pass on.
func TestTracingWithoutProvider(t *testing.T) {
	t.Parallel()
	seen, _ := traced(t, middleware.TracingOptions{}, 200, http.Header{"Traceparent": {traceparent}})
	if seen.TraceID().String() != incomingTrace || seen.SpanID().String() != incomingParent {
		t.Errorf("handler saw %v; want the incoming trace context", seen)
	}
	seen, _ = traced(t, middleware.TracingOptions{}, 200, nil)
	if seen.IsValid() {
		t.Errorf("handler saw %v with no incoming trace; want none", seen)
	}
}

func TestTracingPropagator(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	// A propagator that reads nothing: the span starts a new trace.
	none := propagation.NewCompositeTextMapPropagator()
	traced(t, middleware.TracingOptions{TracerProvider: tp, Propagator: none}, 200, http.Header{"Traceparent": {traceparent}})
	if s := rec.Ended()[0]; s.SpanContext().TraceID().String() == incomingTrace {
		t.Error("the span continued a trace its propagator cannot read")
	}
}

func TestTracingPanic(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	h := middleware.Tracing(middleware.TracingOptions{TracerProvider: tp})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() { recover() }()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	}()
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Status().Code != codes.Error || spans[0].Name() != "GET" {
		t.Fatalf("spans %v; want one ended GET span marked as an error", spans)
	}
	if got := attrs(spans[0])["http.response.status_code"].AsInt64(); got != 500 {
		t.Errorf("status attribute %d; want 500", got)
	}
}

// TestTracingBoundsTraceState: an incoming tracestate over 512 characters
// is cut as the W3C advises: members over 128 characters first, then
// members from the end.
func TestTracingBoundsTraceState(t *testing.T) {
	t.Parallel()
	long := "big=" + strings.Repeat("v", 200)
	var fill []string
	for i := range 30 {
		fill = append(fill, fmt.Sprintf("m%02d=%s", i, strings.Repeat("x", 40))) // 44 characters each
	}
	tests := []struct{ in, want string }{
		{"a=1,b=2", "a=1,b=2"},
		{"a=1," + long + ",b=2", "a=1," + long + ",b=2"}, // within 512: kept as it is
		{long + "," + strings.Join(fill, ","), strings.Join(fill[:11], ",")},
		{strings.Join(fill, ","), strings.Join(fill[:11], ",")},
	}
	for _, tt := range tests {
		var got string
		h := middleware.Tracing(middleware.TracingOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = trace.SpanContextFromContext(r.Context()).TraceState().String()
		}))
		req := httptest.NewRequest("POST", "/", nil)
		req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		req.Header.Set("Tracestate", tt.in)
		h.ServeHTTP(httptest.NewRecorder(), req)
		if got != tt.want {
			t.Errorf("tracestate %.60q… (%d characters): got %.60q… (%d); want %.60q… (%d)", tt.in, len(tt.in), got, len(got), tt.want, len(tt.want))
		}
		if len(got) > middleware.MaxTraceStateLen {
			t.Errorf("got %d characters", len(got))
		}
	}
}
