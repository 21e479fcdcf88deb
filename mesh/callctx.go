package mesh

import "context"

type callKey struct{}

// CallFromContext returns the call being served in ctx: the context a
// function gets, or one derived from it.
func CallFromContext(ctx context.Context) (*Call, bool) {
	c, ok := ctx.Value(callKey{}).(*Call)
	return c, ok
}
