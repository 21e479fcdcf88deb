package transport_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/transport"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	good := []string{"a", "payments", "charge_v2", "A-Z", strings.Repeat("x", 64)}
	bad := []string{"", ".", "a.b", "*", ">", "a b", " a", "a\t", "a\n", "a\x00", "é", "pаyments" /* Cyrillic a */, "a%2Eb", "a/b", strings.Repeat("x", 65), "a>", "fn.*"}
	for _, s := range good {
		if err := transport.ValidateName(s); err != nil {
			t.Errorf("ValidateName(%q) = %v; want nil", s, err)
		}
	}
	for _, s := range bad {
		err := transport.ValidateName(s)
		ne, ok := errors.AsType[*transport.NameError](err)
		if !errors.Is(err, transport.ErrInvalidName) || !ok || ne.Reason == "" {
			t.Errorf("ValidateName(%q) = %v; want a *NameError with its reason, which is ErrInvalidName", s, err)
		}
	}
	if ne, _ := errors.AsType[*transport.NameError](transport.ValidateName("a.b")); ne == nil || ne.Reason != "byte 0x2e at 1 is not one of A-Z a-z 0-9 _ -" {
		t.Errorf("ValidateName(a.b) reason %v; want the byte and where", ne)
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	got, err := transport.Subject("fn", "payments", "charge")
	if err != nil || got != "fn.payments.charge" {
		t.Fatalf("Subject = %q, %v; want fn.payments.charge", got, err)
	}
	if _, err := transport.Subject("fn", "a.b", "c"); err == nil {
		t.Fatal("Subject accepted service a.b")
	}
	if _, err := transport.Subject("fn", "a", ">"); err == nil {
		t.Fatal("Subject accepted function >")
	}
	svc, fn, ok := transport.SplitSubject("fn", "fn.payments.charge")
	if !ok || svc != "payments" || fn != "charge" {
		t.Fatalf("SplitSubject = %q %q %v", svc, fn, ok)
	}
	for _, s := range []string{"fn.a", "fn.a.b.c", "x.a.b", "fn..b"} {
		if _, _, ok := transport.SplitSubject("fn", s); ok {
			t.Errorf("SplitSubject(%q) ok; want false", s)
		}
	}
	if err := transport.ValidatePrefix("org.fn"); err != nil {
		t.Errorf("ValidatePrefix(org.fn) = %v", err)
	}
	for _, p := range []string{"", "fn.", "f*", "a..b"} {
		if err := transport.ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) = nil; want error", p)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "a.b", "*", ">", " ", "é", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := transport.ValidateName(s)
		subj, serr := transport.Subject("fn", s, "f")
		if (err == nil) != (serr == nil) {
			t.Fatalf("ValidateName and Subject disagree on %q: %v vs %v", s, err, serr)
		}
		if err != nil {
			return
		}
		// A valid name never changes the subject's shape.
		if strings.Count(subj, ".") != 2 || strings.ContainsAny(subj, "*> \t\r\n") {
			t.Fatalf("name %q made subject %q", s, subj)
		}
		svc, fn, ok := transport.SplitSubject("fn", subj)
		if !ok || svc != s || fn != "f" {
			t.Fatalf("SplitSubject(%q) = %q %q %v", subj, svc, fn, ok)
		}
	})
}
