package middleware

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the instrumentation name of the tracer [Tracing] gets from
// its provider.
const TracerName = "github.com/funcmesh/funcmesh/middleware"

// TracingOptions configures [Tracing]. The zero value is the default.
type TracingOptions struct {
	// TracerProvider makes the spans. Nil means no spans are recorded; an
	// incoming trace context is still carried on in the request's context,
	// so the mesh passes it to the functions.
	TracerProvider trace.TracerProvider

	// Propagator reads the incoming trace context from the request
	// headers; W3C Trace Context (traceparent, tracestate) by default.
	Propagator propagation.TextMapPropagator
}

// Tracing returns middleware that starts an OpenTelemetry server span for
// each request, a child of the trace context in the request headers when
// there is one, and puts it in the request's context, where
// trace.SpanFromContext finds it: the mesh client reads it there and
// carries the trace on to the functions it calls.
//
// What a client sends is carried on only within the W3C Trace Context
// bounds: a well-formed traceparent (the propagator's), and a tracestate
// cut to at most [MaxTraceStateLen] characters as the W3C advises, by
// leaving out members longer than 128 characters and then members from
// the end.
//
// The span is named after the route ("POST /fn/{service}/{function}", the
// matched mux pattern with the method) or the method alone, and carries
// the method, path, route, status, request ID and the service and function
// path values. A status of 500 or more (or a panic) marks the span as
// failed.
//
// It uses no global OpenTelemetry state: the provider and the propagator
// are the ones in opts.
func Tracing(opts TracingOptions) func(http.Handler) http.Handler {
	tp := opts.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	prop := opts.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	tracer := tp.Tracer(TracerName)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := boundTraceState(prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
			ctx, span := tracer.Start(ctx, spanName(r),
				trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(
					semconv.HTTPRequestMethodKey.String(r.Method),
					semconv.URLPath(r.URL.Path),
				))
			rw := wrapResponseWriter(w)
			done := false
			defer func() {
				if span.IsRecording() {
					status := rw.statusCode()
					if !done && !rw.started() {
						status = http.StatusInternalServerError
					}
					span.SetAttributes(semconv.HTTPResponseStatusCode(status))
					if r.Pattern != "" {
						span.SetAttributes(semconv.HTTPRoute(r.Pattern))
					}
					if id := requestID(ctx, rw); id != "" {
						span.SetAttributes(attribute.String("funcmesh.request_id", id))
					}
					if s := r.PathValue("service"); s != "" {
						span.SetAttributes(attribute.String("funcmesh.service", s))
					}
					if f := r.PathValue("function"); f != "" {
						span.SetAttributes(attribute.String("funcmesh.function", f))
					}
					switch {
					case !done:
						span.SetStatus(codes.Error, "panic")
					case status >= 500:
						span.SetStatus(codes.Error, http.StatusText(status))
					}
				}
				span.End()
			}()
			next.ServeHTTP(rw, r.WithContext(ctx))
			done = true
		})
	}
}

// spanName is the route with the method, as OpenTelemetry's HTTP
// conventions ask, or the method alone when no pattern matched yet.
func spanName(r *http.Request) string {
	p := r.Pattern
	if p == "" {
		return r.Method
	}
	// A pattern may or may not start with a method ("POST /x" or "/x").
	if hasMethod(p) {
		return p
	}
	return r.Method + " " + p
}

// hasMethod reports whether a mux pattern starts with "METHOD ".
func hasMethod(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == ' ' || c == '\t':
			return i > 0
		case c == '/':
			return false
		}
	}
	return false
}

// MaxTraceStateLen is the most characters of an incoming tracestate that
// [Tracing] carries on: 512, the length the W3C asks every vendor to
// propagate at least.
const MaxTraceStateLen = 512

// boundTraceState cuts the tracestate of the remote span context in ctx
// to MaxTraceStateLen characters, as the W3C Trace Context says to
// truncate: members over 128 characters go first, then members from the
// end of the list.
func boundTraceState(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	ts := sc.TraceState()
	if len(ts.String()) <= MaxTraceStateLen {
		return ctx
	}
	type member struct{ k, v string }
	var keep []member
	n := -1 // no comma before the first member
	ts.Walk(func(k, v string) bool {
		m := len(k) + 1 + len(v)
		switch {
		case m > 128:
			return true
		case n+1+m > MaxTraceStateLen:
			return false
		}
		keep = append(keep, member{k, v})
		n += 1 + m
		return true
	})
	var out trace.TraceState
	for i := len(keep) - 1; i >= 0; i-- { // Insert puts a member first
		out, _ = out.Insert(keep[i].k, keep[i].v) // members of a parsed state: valid
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(out))
}
