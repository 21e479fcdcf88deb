package mesh_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/internal/natstest"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// TestClientPolicyCall: a host's call in a context that names a caller
// and carries the policy-call mark reaches the function with that caller
// and a signature that verifies and carries the mark, claims or not;
// without a signer the call is refused before it is sent.
func TestClientPolicyCall(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t, nil)
	var ran atomic.Int64
	type seen struct {
		caller, claims, sig, requestID string
		deadline                       time.Time
	}
	var last atomic.Pointer[seen]
	startService(t, natstest.Connect(t, s), "b", map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(_ context.Context, c *mesh.Call) ([]byte, error) {
			ran.Add(1)
			caller := ""
			if cl, ok := c.Caller(); ok {
				caller = cl.String()
			}
			claims, _ := c.ClaimsJSON()
			last.Store(&seen{caller, string(claims), c.Header(transport.HeaderAuthSig), c.RequestID(), c.Deadline()})
			return []byte(`{"ack":true}`), nil
		}),
	})
	nc := natstest.Connect(t, s)
	ctx := reqctx.WithPolicyCall(reqctx.WithCaller(reqctx.WithRequestID(context.Background(), "req-1"), transport.PolicyCaller))

	bare, err := mesh.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Invoke(ctx, "b", "f", nil); transport.CodeOf(err) != transport.CodeInternal || ran.Load() != 0 {
		t.Errorf("a policy call without a signer: %v, ran %d; want internal, not sent", err, ran.Load())
	}

	client, err := mesh.NewClient(nc, mesh.WithClaimsSigner(testSigner))
	if err != nil {
		t.Fatal(err)
	}
	for _, claims := range []string{"", `{"sub":"u1"}`} {
		cctx := ctx
		if claims != "" {
			cctx = reqctx.WithClaims(ctx, map[string]any{"sub": "u1"}, []byte(claims))
		}
		if _, err := client.Invoke(cctx, "b", "f", nil); err != nil {
			t.Fatal(err)
		}
		got := last.Load()
		if got.caller != "authz.policy" || got.claims != claims || got.requestID != "req-1" {
			t.Errorf("claims %q: the function saw %+v; want caller authz.policy, the claims, req-1", claims, got)
		}
		if err := testSigner.Verify(got.sig, claims, "req-1", got.deadline, time.Now()); err != nil || !testSigner.PolicyCall(got.sig) {
			t.Errorf("claims %q: signature %q: Verify = %v, PolicyCall = %v; want a valid marked signature", claims, got.sig, err, testSigner.PolicyCall(got.sig))
		}
	}

	// An ordinary host call: no caller, an unmarked signature.
	if _, err := client.Invoke(reqctx.WithClaims(context.Background(), map[string]any{"sub": "u1"}, []byte(`{"sub":"u1"}`)), "b", "f", nil); err != nil {
		t.Fatal(err)
	}
	if got := last.Load(); got.caller != "" || got.sig == "" || testSigner.PolicyCall(got.sig) {
		t.Errorf("an ordinary call: the function saw %+v; want no caller and an unmarked signature", got)
	}
}
