package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/transport"
)

func TestCodeStatusRoundTrip(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for _, c := range transport.Codes() {
		s := c.HTTPStatus()
		if seen[s] {
			t.Errorf("status %d used twice", s)
		}
		seen[s] = true
		back, ok := transport.CodeForStatus(s)
		if !ok || back != c {
			t.Errorf("CodeForStatus(%d) = %q, %v; want %q", s, back, ok, c)
		}
	}
	for s, want := range map[int]transport.Code{418: transport.CodeInvalidArgument, 507: transport.CodeInternal} {
		if got, ok := transport.CodeForStatus(s); !ok || got != want {
			t.Errorf("CodeForStatus(%d) = %q; want %q", s, got, want)
		}
	}
	for _, s := range []int{0, 200, 399, 600} {
		if _, ok := transport.CodeForStatus(s); ok {
			t.Errorf("CodeForStatus(%d) ok; want false", s)
		}
	}
}

func TestErrorHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	for _, e := range []*transport.Error{
		transport.NewError(transport.CodeNotFound, "no such thing"),
		transport.ErrorWithStatus(418, "teapot"),
		transport.NewError(transport.CodeResourceExhausted, "busy"),
	} {
		h := nats.Header{}
		e.SetHeaders(h)
		got := transport.ErrorFromHeaders(h)
		if got == nil || got.Code() != e.Code() || got.HTTPStatus() != e.HTTPStatus() || got.Message() != e.Message() {
			t.Errorf("round trip of %v gave %v", e, got)
		}
	}
	if transport.ErrorFromHeaders(nats.Header{"X": {"y"}}) != nil {
		t.Error("plain reply read as an error")
	}
	for _, code := range []string{"", "abc", "200", "600", "-1"} {
		h := nats.Header{transport.HeaderServiceError: {"m"}, transport.HeaderServiceErrorCode: {code}}
		if got := transport.ErrorFromHeaders(h); got == nil || got.Code() != transport.CodeBadReply {
			t.Errorf("code %q: got %v; want bad_reply", code, got)
		}
	}
}

func TestCodeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want transport.Code
	}{
		{nil, ""},
		{errors.New("x"), transport.CodeInternal},
		{context.DeadlineExceeded, transport.CodeDeadlineExceeded},
		{fmt.Errorf("w: %w", context.Canceled), transport.CodeCanceled},
		{fmt.Errorf("w: %w", transport.NewError(transport.CodeConflict, "c")), transport.CodeConflict},
	}
	for _, tt := range tests {
		if got := transport.CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %q; want %q", tt.err, got, tt.want)
		}
	}
}

func TestWriteHTTPErrorHidesCause(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	rec.Header().Set(transport.HeaderXRequestID, "req-1")
	transport.WriteHTTPError(rec, fmt.Errorf("nats: secret internals at 10.0.0.1"))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d; want 500", rec.Code)
	}
	body := rec.Body.String()
	if strings.Contains(body, "secret") || strings.Contains(body, "nats") {
		t.Fatalf("body leaks internals: %s", body)
	}
	e, id, err := transport.ParseHTTPError(rec.Code, rec.Body.Bytes())
	if err != nil || e.Code() != transport.CodeInternal || id != "req-1" {
		t.Fatalf("ParseHTTPError = %v, %q, %v", e, id, err)
	}
}

func TestDeadlineAndCaller(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "abc", "-5", "0", "99999999999999999999"} {
		if _, err := transport.ParseDeadline(s); err == nil {
			t.Errorf("ParseDeadline(%q) = nil error", s)
		}
	}
	c, err := transport.ParseCaller("payments.charge")
	if err != nil || c.Service != "payments" || c.Function != "charge" || c.String() != "payments.charge" {
		t.Fatalf("ParseCaller = %v, %v", c, err)
	}
	for _, s := range []string{"", "a", "a.b.c", ".b", "a.*"} {
		if _, err := transport.ParseCaller(s); err == nil {
			t.Errorf("ParseCaller(%q) = nil error", s)
		}
	}
}

func TestDecodeClaims(t *testing.T) {
	t.Parallel()
	if m, err := transport.DecodeClaims(`{"sub":"u1","n":12345678901234567890}`); err != nil || m["sub"] != "u1" || m["n"].(json.Number).String() != "12345678901234567890" {
		t.Fatalf("DecodeClaims = %v, %v", m, err)
	}
	if m, err := transport.DecodeClaims(""); m != nil || err != nil {
		t.Fatalf("DecodeClaims(\"\") = %v, %v; want anonymous", m, err)
	}
	for _, s := range []string{"null", "[]", "1", `"x"`, `{"a":1}}`, `{"a":1}]`, `{"a":1}{}`, `{"a":1} x`, `{`, strings.Repeat("x", transport.MaxClaimsLen+1)} {
		if _, err := transport.DecodeClaims(s); err == nil {
			t.Errorf("DecodeClaims(%.20q) = nil error", s)
		}
	}
}

func FuzzHeaders(f *testing.F) {
	for _, s := range []string{"", "{}", `{"sub":"u1"}`, "1700000000000", "a.b", "null", "[]", `{"a":1}{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := transport.DecodeClaims(s); err == nil && s != "" && m == nil {
			t.Fatalf("DecodeClaims(%q) gave nil claims and no error", s)
		}
		if d, err := transport.ParseDeadline(s); err == nil {
			if transport.FormatDeadline(d) != strings.TrimLeft(s, "+0") {
				t.Fatalf("deadline %q round-trips to %q", s, transport.FormatDeadline(d))
			}
		}
		if c, err := transport.ParseCaller(s); err == nil && c.String() != s {
			t.Fatalf("caller %q round-trips to %q", s, c.String())
		}
		h := nats.Header{transport.HeaderServiceError: {s}, transport.HeaderServiceErrorCode: {s}}
		if e := transport.ErrorFromHeaders(h); e == nil || e.HTTPStatus() < 400 || e.HTTPStatus() > 599 {
			t.Fatalf("ErrorFromHeaders with %q gave %v", s, e)
		}
	})
}
