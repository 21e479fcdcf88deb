package authz

import (
	"context"
	"encoding/json"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// AuthorizeCall decides a call that a function makes (a nested call), for
// the host's router: it is a mesh.AuthorizeFunc. The input is built from
// ctx as the router leaves it: auth from the claims ([WithClaims], by
// default [reqctx.Claims]: the claims the router verified against the
// host's signature), caller from [reqctx.Caller], and params from params
// (decoded only when the policy reads them; malformed JSON then is 400).
// It returns nil when the call may be made, and otherwise the error to
// answer with: the denial's status (403 or the policy's own 4xx) and
// reason, or 500 when no decision could be made.
func (a *Authorizer) AuthorizeCall(ctx context.Context, service, function string, params []byte) error {
	in := Input{Service: service, Function: function}
	if len(params) > 0 {
		in.Params = json.RawMessage(params)
	}
	claims := reqctx.Claims
	if a != nil && a.cfg.claims != nil {
		claims = a.cfg.claims
	}
	if c, ok := claims(ctx); ok && c != nil {
		in.Auth = c
	}
	d, err := a.Authorize(ctx, in)
	if err != nil {
		if transport.CodeOf(err) == transport.CodeInternal && len(params) > 0 {
			if _, perr := scanJSON(params); perr != nil {
				return transport.WrapError(transport.CodeInvalidArgument, "malformed JSON in the params", perr)
			}
		}
		return err
	}
	return d.Err()
}
