package mesh_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// FuzzRouter sends nested calls with fuzzed headers on a real broker, as
// a rogue holding service a's credentials would. Every call is answered;
// the callee sees claims only when they carry the host's valid signature
// for that request ID and deadline, and then exactly those claims.
func FuzzRouter(f *testing.F) {
	b, err := broker.Start(context.Background(), broker.WithServiceAuth(broker.ServiceAuth{Secret: []byte("router-fuzz-secret-0123456789")}))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close() })
	r, err := mesh.NewRouter(b.Conn(), func(context.Context, string, string, []byte) error { return nil }, mesh.WithClaimsSigner(testSigner))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = r.Stop(context.Background()) })
	conn := func(name string) *nats.Conn {
		creds, _ := b.ServiceCredentials(name)
		nc, err := b.NewConn(name, creds.Option())
		if err != nil {
			f.Fatal(err)
		}
		return nc
	}
	var ran atomic.Int64
	svc, err := mesh.NewService(conn("b"), "b")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Stop(context.Background()) })
	if err := svc.Handle("whoami", whoamiHandler(&ran)); err != nil {
		f.Fatal(err)
	}
	rogue := conn("a")

	deadline := time.Now().Add(time.Hour)
	dl := transport.FormatDeadline(deadline)
	claims := `{"sub":"u1","role":"user"}`
	f.Add(claims, testSigner.Sign(claims, "r1", deadline), "r1", dl, "", "a.f", "")
	f.Add(`{"role":"admin"}`, testSigner.Sign(claims, "r1", deadline), "r1", dl, "1", "a.f", "100")
	f.Add("", "", "", "", "", "a.f", "")
	f.Add(claims, "v1.test.", "r1", "+"+dl, "08", "b.f", "0")
	f.Add("", testSigner.SignPolicyCall("", "r1", deadline), "r1", dl, "", "a.f", "")
	f.Add(claims, testSigner.SignPolicyCall(claims, "r1", deadline), "r1", dl, "", "authz.policy", "")
	f.Fuzz(func(t *testing.T, claims, sig, id, deadline, hops, caller, timeout string) {
		h := nats.Header{}
		for k, v := range map[string]string{
			"Mesh-Auth": claims, "Mesh-Auth-Sig": sig, "Mesh-Request-Id": id, "Mesh-Deadline": deadline,
			"Mesh-Hops": hops, "Mesh-Caller": caller, "Mesh-Timeout-Ms": timeout,
		} {
			if strings.ContainsAny(v, "\r\n\x00") || strings.TrimSpace(v) != v {
				t.Skip("not a header value NATS carries as it is")
			}
			if v != "" {
				h[k] = []string{v}
			}
		}
		m, err := rogue.RequestMsg(&nats.Msg{Subject: "call.a.b.whoami", Header: h}, 5*time.Second)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if e := transport.ErrorFromHeaders(m.Header); e != nil {
			if e.HTTPStatus() < 400 || e.HTTPStatus() > 599 {
				t.Fatalf("answer %v", e)
			}
			return
		}
		var w whoami
		if err := json.Unmarshal(m.Data, &w); err != nil {
			t.Fatalf("answer %q: %v", m.Data, err)
		}
		if claims == "" {
			if w.Claims != nil {
				t.Fatalf("no claims sent, yet b saw %v", w.Claims)
			}
			return
		}
		d, derr := transport.ParseDeadline(deadline)
		if derr != nil || testSigner.Verify(sig, claims, id, d, time.Now()) != nil {
			t.Fatalf("claims %q without a valid signature reached b as %v", claims, w.Claims)
		}
		sent, _ := transport.DecodeClaims(claims)
		if got, _ := json.Marshal(w.Claims); string(got) != mustJSON(sent) {
			t.Fatalf("b saw claims %s; sent %s", got, claims)
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
