package authz

import (
	"context"
	"time"
)

// PolicyCallContext returns ctx in which funcmesh.call calls through call,
// as a decision of service.function by an Authorizer WithCall(call) does,
// for evaluating a module with OPA directly.
func PolicyCallContext(ctx context.Context, call CallFunc, service, function string) context.Context {
	return context.WithValue(ctx, decisionKey{}, &decisionContext{
		calls:   &policyCalls{call: call, inflight: map[inflightKey]int{}},
		service: service, function: function,
	})
}

// ParseDate is parseDate, for the fuzz test.
func ParseDate(s string) (time.Time, bool) { return parseDate(s) }
