package mesh

import (
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// instrumentationName names the tracer the mesh gets from a provider.
const instrumentationName = "github.com/funcmesh/funcmesh/mesh"

// traceContext is the W3C trace context propagator: traceparent and
// tracestate. The mesh uses it directly rather than the global
// propagator, so the headers travel whatever the application configured.
var traceContext propagation.TraceContext

// headerCarrier lets the propagator read and write NATS headers. nats.Header
// is case-sensitive; the W3C names are lower case.
type headerCarrier nats.Header

var _ propagation.TextMapCarrier = headerCarrier(nil)

// Get returns the first value of key.
func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets key to value.
func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys present.
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
