package transport_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/transport"
)

// The signature's input is a fixed format, so that hosts of different
// versions agree: written out here without the signer's code.
func TestClaimsSignatureFormat(t *testing.T) {
	t.Parallel()
	s := newSigner(t, keyA)
	deadline := time.UnixMilli(1_700_000_000_123)
	for _, tc := range []struct{ claims, id string }{
		{`{"sub":"u1"}`, "req-1"},
		{"", ""},
		{strings.Repeat(`{"k":"`+strings.Repeat("x", 1000)+`"}`, 80), "r"},
	} {
		m := hmac.New(sha256.New, keyA.Secret)
		fmt.Fprintf(m, "funcmesh-claims-v1\n%d:%s\n%d:%s\n%d\n", len(tc.id), tc.id, len(tc.claims), tc.claims, deadline.UnixMilli())
		want := "v1.a." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		if got := s.Sign(tc.claims, tc.id, deadline); got != want {
			t.Errorf("Sign(%.20q, %q) = %s; want %s", tc.claims, tc.id, got, want)
		}
	}
}

func BenchmarkClaimsSigner(b *testing.B) {
	s, err := transport.NewClaimsSigner(keyA)
	if err != nil {
		b.Fatal(err)
	}
	claims := `{"iss":"https://idp.example.com","sub":"u1","aud":"funcmesh","role":"user","email":"u1@example.com"}`
	deadline := time.Now().Add(time.Hour)
	sig := s.Sign(claims, "8Pq3bHdHdFOG1xNHN8fYzo", deadline)
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = s.Sign(claims, "8Pq3bHdHdFOG1xNHN8fYzo", deadline)
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		now := time.Now()
		for b.Loop() {
			if err := s.Verify(sig, claims, "8Pq3bHdHdFOG1xNHN8fYzo", deadline, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
