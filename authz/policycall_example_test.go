package authz_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/funcmesh/funcmesh/authz"
)

// A func rule asks a function of the mesh whether the call may be made.
// The host gives the Authorizer the means to call: a mesh.Client's Invoke
// in a real host, a plain function here.
func ExampleWithCall() {
	premium := map[string]bool{"u1": true}
	call := func(ctx context.Context, service, function string, params []byte) ([]byte, error) {
		// service.function is auth.check; params is the call being decided.
		var in struct {
			Auth struct{ Sub string } `json:"auth"`
		}
		if err := json.Unmarshal(params, &in); err != nil {
			return nil, err
		}
		return fmt.Appendf(nil, `{"ack": %v}`, premium[in.Auth.Sub]), nil
	}
	a, err := authz.New(context.Background(),
		authz.ServiceRulesJSON("video", []byte(`{"functions": {"watch": {"rule": {
			"rule": "func", "service": "auth", "func": "check", "error": "premium content"}}}}`)),
		authz.WithCall(call))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, sub := range []string{"u1", "u2"} {
		d, _ := a.Authorize(context.Background(), authz.Input{Service: "video", Function: "watch", Auth: map[string]any{"sub": sub}})
		fmt.Printf("%s: allow %v, status %d, %q\n", sub, d.Allow, d.Status, d.Reason)
	}
	// Output:
	// u1: allow true, status 0, ""
	// u2: allow false, status 403, "premium content"
}
