package transport_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/transport"
)

func TestCallSubject(t *testing.T) {
	t.Parallel()
	got, err := transport.CallSubject("call", "orders", "payments", "charge")
	if err != nil || got != "call.orders.payments.charge" {
		t.Fatalf("CallSubject = %q, %v", got, err)
	}
	for _, bad := range [][3]string{{"a.b", "c", "d"}, {"a", "*", "d"}, {"a", "b", ">"}, {"", "b", "c"}} {
		if _, err := transport.CallSubject("call", bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("CallSubject(%q) accepted", bad)
		}
	}
	c, s, f, ok := transport.SplitCallSubject("call", "call.orders.payments.charge")
	if !ok || c != "orders" || s != "payments" || f != "charge" {
		t.Errorf("SplitCallSubject = %q %q %q %v", c, s, f, ok)
	}
	for _, subj := range []string{"call.a.b", "call.a.b.c.d", "fn.a.b.c", "call..b.c", "call.a.*.c"} {
		if _, _, _, ok := transport.SplitCallSubject("call", subj); ok {
			t.Errorf("SplitCallSubject(%q) ok", subj)
		}
	}
	for _, tc := range []struct {
		call, fn string
		ok       bool
	}{
		{"call", "fn", true}, {"api.call", "api.fn", true}, {"fn", "fn", false},
		{"api", "api.fn", false}, {"api.fn.x", "api.fn", false}, {"call.", "fn", false},
	} {
		if err := transport.ValidateCallPrefix(tc.call, tc.fn); (err == nil) != tc.ok {
			t.Errorf("ValidateCallPrefix(%q, %q) = %v; want ok %v", tc.call, tc.fn, err, tc.ok)
		}
	}
}

func FuzzCallHeaders(f *testing.F) {
	for _, s := range []string{"0", "8", "255", "256", "-1", "+1", "01", "", "call.a.b.c", "call.a.b", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := transport.ParseHops(s); err == nil {
			if n < 0 || n > transport.MaxHopsValue || strings.TrimLeft(strconv.Itoa(n), "0") != strings.TrimLeft(s, "0") {
				t.Fatalf("ParseHops(%q) = %d", s, n)
			}
		}
		if c, svc, fn, ok := transport.SplitCallSubject("call", s); ok {
			if subj, err := transport.CallSubject("call", c, svc, fn); err != nil || subj != s {
				t.Fatalf("SplitCallSubject(%q) = %q %q %q, which makes %q (%v)", s, c, svc, fn, subj, err)
			}
		}
	})
}
