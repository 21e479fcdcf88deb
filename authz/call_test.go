package authz_test

import (
	"context"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// AuthorizeCall reads the caller and the claims from the context a router
// leaves, and the params as sent.
func TestAuthorizeCall(t *testing.T) {
	t.Parallel()
	a, err := authz.New(context.Background(), authz.Module("nested.rego", `package funcmesh.authz

default allow := false

allow if {
	input.caller.service == "orders"
	input.caller.function == "place"
	input.auth.sub == "u1"
	input.params.amount <= 100
}

status := 418 if input.caller.service == "teapot"
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := func(service string, claims map[string]any) context.Context {
		c := reqctx.WithCaller(context.Background(), transport.Caller{Service: service, Function: "place"})
		if claims != nil {
			c = reqctx.WithClaims(c, claims, nil)
		}
		return c
	}
	u1 := map[string]any{"sub": "u1"}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		params string
		want   int // 0: allowed
	}{
		{"allowed", ctx("orders", u1), `{"amount": 5}`, 0},
		{"over the limit", ctx("orders", u1), `{"amount": 500}`, 403},
		{"another caller", ctx("billing", u1), `{"amount": 5}`, 403},
		{"anonymous", ctx("orders", nil), `{"amount": 5}`, 403},
		{"no caller", reqctx.WithClaims(context.Background(), u1, nil), `{"amount": 5}`, 403},
		{"the policy's status", ctx("teapot", u1), `{}`, 418},
		{"malformed params", ctx("orders", u1), `{"amount": `, 400},
	} {
		err := a.AuthorizeCall(tc.ctx, "payments", "charge", []byte(tc.params))
		if got := transport.AsError(err); (tc.want == 0) != (err == nil) || (got != nil && got.HTTPStatus() != tc.want) {
			t.Errorf("%s: %v; want status %d", tc.name, err, tc.want)
		}
	}
	if err := a.AuthorizeCall(ctx("orders", u1), "a.b", "charge", nil); transport.CodeOf(err) != transport.CodeInvalidArgument {
		t.Errorf("invalid service name: %v; want 400", err)
	}
}
