package transport_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/transport"
)

func TestParseTimeout(t *testing.T) {
	t.Parallel()
	good := map[string]time.Duration{
		"1":          time.Millisecond,
		"2500":       2500 * time.Millisecond,
		"007":        7 * time.Millisecond,
		"9999999999": 9999999999 * time.Millisecond,
	}
	for s, want := range good {
		if got, err := transport.ParseTimeout(s); err != nil || got != want {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	bad := []string{"", "0", "0000", "-1", "+1", " 1", "1 ", "1.5", "1e3", "1s", "0x10", "١٢", "10000000000", "99999999999999999999", "1,000"}
	for _, s := range bad {
		if got, err := transport.ParseTimeout(s); err == nil {
			t.Errorf("ParseTimeout(%q) = %v; want an error", s, got)
		}
	}
}

func TestFormatTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1000"},
		{1500 * time.Microsecond, "2"}, // rounded up: never shorter than asked
		{time.Nanosecond, "1"},
		{0, "1"},
		{-time.Hour, "1"},
		{time.Duration(1<<63 - 1), "9999999999"},
	}
	for _, tt := range tests {
		if got := transport.FormatTimeout(tt.d); got != tt.want {
			t.Errorf("FormatTimeout(%v) = %q; want %q", tt.d, got, tt.want)
		}
	}
}

// FuzzParseTimeout: any header value is either refused or a positive
// whole number of milliseconds that formats back to the same value.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1", "2500", "0", "-1", "1.5", "9999999999", "10000000000", " 7", "007", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := transport.ParseTimeout(s)
		if err != nil {
			return
		}
		if d <= 0 || d%time.Millisecond != 0 || len(s) > transport.MaxTimeoutDigits {
			t.Fatalf("ParseTimeout(%q) = %v; want a positive whole number of milliseconds from at most %d digits", s, d, transport.MaxTimeoutDigits)
		}
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || time.Duration(n)*time.Millisecond != d {
			t.Fatalf("ParseTimeout(%q) = %v; strconv reads %d, %v", s, d, n, perr)
		}
		back, err := transport.ParseTimeout(transport.FormatTimeout(d))
		if err != nil || back != d {
			t.Fatalf("round trip of %v: %v, %v", d, back, err)
		}
	})
}
