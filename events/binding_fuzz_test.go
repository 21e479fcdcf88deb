package events

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/transport"
)

// FuzzBinding: the signature of a received event binds its ce-* headers,
// Content-Type, request ID and data through binding; two events whose
// bound fields differ in any way must not share a binding, or a signature
// could be moved from one to the other. It checks this through the
// signer, as a trigger verifies a received event: the signature of the
// first event holds for the second only if they are the same.
func FuzzBinding(f *testing.F) {
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k", Secret: bytes.Repeat([]byte("b"), 32)})
	if err != nil {
		f.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	f.Add("id1", "funcmesh", "signup", "2026-11-30T16:00:00Z", "application/json", "req1", []byte(`{}`), "id1", "funcmesh", "signup", "2026-11-30T16:00:00Z", "application/json", "req1", []byte(`{"a":1}`))
	f.Add("id1", "a", "bc", "", "", "", []byte{}, "id1", "ab", "c", "", "", "", []byte{})
	f.Add("id1", "a\n1:b", "", "", "", "", []byte{}, "id1", "a", "b", "", "", "", []byte{})
	f.Add("x:1", "s", "t", "", "", "", []byte("d"), "x", "s", "t", "", "", "", []byte("1:d"))
	f.Fuzz(func(t *testing.T, id1, src1, typ1, tm1, ct1, req1 string, d1 []byte, id2, src2, typ2, tm2, ct2, req2 string, d2 []byte) {
		mk := func(id, src, typ, tm, ct, req string) nats.Header {
			h := nats.Header{}
			for k, v := range map[string]string{HeaderID: id, HeaderSource: src, HeaderType: typ, HeaderTime: tm, "Content-Type": ct, hRequest: req} {
				h[k] = []string{v}
			}
			return h
		}
		b1, b2 := binding(mk(id1, src1, typ1, tm1, ct1, req1), d1), binding(mk(id2, src2, typ2, tm2, ct2, req2), d2)
		same := id1 == id2 && src1 == src2 && typ1 == typ2 && tm1 == tm2 && ct1 == ct2 && req1 == req2 && string(d1) == string(d2)
		if same != (b1 == b2) {
			t.Fatalf("fields equal %v but bindings equal %v: %q / %q", same, b1 == b2, b1, b2)
		}
		sig := signer.Sign("", b1, exp)
		if err := signer.Verify(sig, "", b2, exp, time.Now()); (err == nil) != same {
			t.Fatalf("fields equal %v but the first event's signature verifies the second: %v", same, err)
		}
	})
}
