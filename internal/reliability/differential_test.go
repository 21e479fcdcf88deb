package reliability_test

import (
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
)

// TestParamsCaseDifferential: a policy reads params with OPA, where object
// keys are case-sensitive, while a Go function decodes them with
// encoding/json, which matches struct fields without regard to case and
// keeps the last match. Params that hold the same key in two cases could
// show the policy one value and the function another; they are refused.
func TestParamsCaseDifferential(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	startEcho(t, b.ClientURL(), "svc")
	g := newGateway(t, b.Conn(), gatewayConfig{Timeout: 2 * time.Second, Policy: []authz.Option{authz.Module("p.rego", `package funcmesh.authz

default allow := false

allow if input.function == "count"

allow if {
	input.function == "sleep"
	input.params.ms <= 50
}
`)}})
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"ms":10}`, 200},
		{`{"ms":60000}`, 403},
		{`{"MS":60000}`, 403},                 // the policy's rule is undefined: denied
		{`{"ms":10,"MS":60000}`, 400},         // the function would see 60000
		{`{"ms":10,"Ms":60000}`, 400},         // any case
		{`{"ms":10,"m\u017f":60000}`, 400},    // long s folds to s for encoding/json
		{`{"x":{"ms":1,"MS":2},"ms":1}`, 400}, // nested objects too
	} {
		a := g.post("svc", "sleep", tc.body)
		if a.status != tc.status {
			t.Errorf("sleep %s: %v; want %d", tc.body, a, tc.status)
		}
	}
	if n := counts(t, g, "svc")["sleep"]; n != 1 {
		t.Errorf("sleep ran %d times; want once, for the call the policy allowed", n)
	}
}
