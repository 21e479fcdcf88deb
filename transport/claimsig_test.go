package transport_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/transport"
)

func newSigner(t *testing.T, current transport.ClaimsKey, previous ...transport.ClaimsKey) *transport.ClaimsSigner {
	t.Helper()
	s, err := transport.NewClaimsSigner(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	keyA = transport.ClaimsKey{ID: "a", Secret: bytes.Repeat([]byte("a"), 32)}
	keyB = transport.ClaimsKey{ID: "b", Secret: bytes.Repeat([]byte("b"), 32)}
)

func TestClaimsSigner(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	deadline := now.Add(5 * time.Second)
	claims, id := `{"sub":"u1","role":"user"}`, "req-1"
	s := newSigner(t, keyA)
	sig := s.Sign(claims, id, deadline)
	if err := s.Verify(sig, claims, id, deadline, now); err != nil {
		t.Fatalf("Verify of a fresh signature: %v", err)
	}
	bad := func(name, sig, claims, id string, deadline time.Time, want error) {
		t.Helper()
		if err := s.Verify(sig, claims, id, deadline, now); !errors.Is(err, want) {
			t.Errorf("%s: Verify = %v; want %v", name, err, want)
		}
	}
	if err := s.Verify(sig, claims, id, deadline, deadline); !errors.Is(err, transport.ErrClaimsExpired) {
		t.Errorf("at the deadline: Verify = %v; want ErrClaimsExpired", err)
	}
	bad("later deadline", sig, claims, id, deadline.Add(time.Millisecond), transport.ErrClaimsSignature)
	bad("other request", sig, claims, "req-2", deadline, transport.ErrClaimsSignature)
	bad("no signature", "", claims, id, deadline, transport.ErrClaimsSignature)
	bad("unknown key", "v1.c"+sig[4:], claims, id, deadline, transport.ErrClaimsSignature)
	bad("other version", "v2"+sig[2:], claims, id, deadline, transport.ErrClaimsSignature)
	bad("truncated", sig[:len(sig)-1], claims, id, deadline, transport.ErrClaimsSignature)
	for i := range len(claims) {
		// Every one-byte change of the claims is refused.
		c := []byte(claims)
		c[i] ^= 1
		bad("claims changed", sig, string(c), id, deadline, transport.ErrClaimsSignature)
	}
	for i := len("v1.a."); i < len(sig); i++ {
		c := []byte(sig)
		c[i] = 'A' + (c[i]+1)%26
		if string(c) != sig {
			bad("signature changed", string(c), claims, id, deadline, transport.ErrClaimsSignature)
		}
	}
	// Field boundaries cannot be moved: the request ID and claims are
	// length-prefixed.
	bad("moved boundary", s.Sign(`x`, `y`+id, deadline), `xy`, id, deadline, transport.ErrClaimsSignature)
}

func TestClaimsSignerRotation(t *testing.T) {
	t.Parallel()
	now := time.Now()
	deadline := now.Add(time.Minute)
	old := newSigner(t, keyA)
	sig := old.Sign("{}", "r", deadline)
	rotated := newSigner(t, keyB, keyA)
	if err := rotated.Verify(sig, "{}", "r", deadline, now); err != nil {
		t.Errorf("a signature of the previous key: %v; want valid", err)
	}
	if err := old.Verify(rotated.Sign("{}", "r", deadline), "{}", "r", deadline, now); !errors.Is(err, transport.ErrClaimsSignature) {
		t.Errorf("the new key's signature on a signer without it: %v; want ErrClaimsSignature", err)
	}
	retired := newSigner(t, keyB)
	if err := retired.Verify(sig, "{}", "r", deadline, now); !errors.Is(err, transport.ErrClaimsSignature) {
		t.Errorf("a retired key's signature: %v; want ErrClaimsSignature", err)
	}
}

func TestNewClaimsSignerErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		current  transport.ClaimsKey
		previous []transport.ClaimsKey
	}{
		{"short secret", transport.ClaimsKey{ID: "a", Secret: []byte("short")}, nil},
		{"bad ID", transport.ClaimsKey{ID: "a.b", Secret: keyA.Secret}, nil},
		{"empty ID", transport.ClaimsKey{Secret: keyA.Secret}, nil},
		{"duplicate ID", keyA, []transport.ClaimsKey{keyA}},
	} {
		if _, err := transport.NewClaimsSigner(tc.current, tc.previous...); err == nil {
			t.Errorf("%s: NewClaimsSigner succeeded; want an error", tc.name)
		}
	}
}

func FuzzClaimsSignature(f *testing.F) {
	s, err := transport.NewClaimsSigner(keyA)
	if err != nil {
		f.Fatal(err)
	}
	deadline := time.UnixMilli(1_700_000_060_000)
	now := time.UnixMilli(1_700_000_000_000)
	good := s.Sign(`{"sub":"u1"}`, "r1", deadline)
	f.Add(good, `{"sub":"u1"}`, "r1")
	f.Add("v1.a.", "{}", "")
	f.Add("v1..x", "", "r")
	f.Add(s.SignPolicyCall("", "r1", deadline), "", "r1")
	f.Add(s.SignPolicyCall(`{"sub":"u1"}`, "r1", deadline), `{"sub":"u1"}`, "r1")
	f.Fuzz(func(t *testing.T, sig, claims, id string) {
		err := s.Verify(sig, claims, id, deadline, now)
		want := s.Sign(claims, id, deadline)
		if s.PolicyCall(sig) {
			want = s.SignPolicyCall(claims, id, deadline)
		}
		if err == nil && sig != want {
			t.Fatalf("Verify(%q, %q, %q) accepted a signature Sign or SignPolicyCall would not make", sig, claims, id)
		}
		if err != nil && !errors.Is(err, transport.ErrClaimsSignature) {
			t.Fatalf("Verify error %v; want ErrClaimsSignature", err)
		}
	})
}

// TestClaimsSignerPolicyCall: a policy call's signature verifies, says
// so, and cannot be turned into a plain one or the other way round, with
// claims or without.
func TestClaimsSignerPolicyCall(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	deadline := now.Add(5 * time.Second)
	s := newSigner(t, keyA)
	for _, claims := range []string{`{"sub":"u1"}`, ""} {
		marked := s.SignPolicyCall(claims, "req-1", deadline)
		plain := s.Sign(claims, "req-1", deadline)
		if err := s.Verify(marked, claims, "req-1", deadline, now); err != nil || !s.PolicyCall(marked) {
			t.Errorf("claims %q: a policy call's signature: Verify = %v, PolicyCall = %v; want nil, true", claims, err, s.PolicyCall(marked))
		}
		if err := s.Verify(plain, claims, "req-1", deadline, now); err != nil || s.PolicyCall(plain) {
			t.Errorf("claims %q: a plain signature: Verify = %v, PolicyCall = %v; want nil, false", claims, err, s.PolicyCall(plain))
		}
		// The mark stripped (the plain prefix on the policy MAC) or forged
		// (the policy prefix on a plain MAC): neither verifies.
		for name, sig := range map[string]string{"stripped": "v1" + marked[2:], "forged": "p1" + plain[2:]} {
			if err := s.Verify(sig, claims, "req-1", deadline, now); !errors.Is(err, transport.ErrClaimsSignature) {
				t.Errorf("claims %q: mark %s: Verify = %v; want ErrClaimsSignature", claims, name, err)
			}
		}
		if err := s.Verify(marked, claims, "req-2", deadline, now); !errors.Is(err, transport.ErrClaimsSignature) {
			t.Errorf("claims %q: a policy call's signature for another request: Verify = %v", claims, err)
		}
	}
	if err := s.Verify(s.SignPolicyCall("", "req-1", deadline), `{"sub":"u1"}`, "req-1", deadline, now); !errors.Is(err, transport.ErrClaimsSignature) {
		t.Errorf("an anonymous policy call's signature with claims added: Verify = %v", err)
	}
}
