package transport

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// HeaderTimeoutMs is the HTTP request header in which a caller asks for a
// shorter deadline than the gateway's own: the time it will wait, in
// decimal milliseconds, 1 to [MaxTimeoutDigits] ASCII digits, more than
// zero ("2500" is two and a half seconds). The gateway bounds it by its
// own maximum, so it can shorten a call's deadline but never extend it. It
// is an HTTP header the gateway reads, like Connect's Connect-Timeout-Ms;
// a function call (fn.<service>.<function>) carries the resulting deadline
// in Mesh-Deadline. On the call route (see [CallSubject]) it has the same
// meaning: a function passes on the deadline its claims were signed for in
// Mesh-Deadline and asks for a shorter one with this header; the router
// bounds it by that deadline.
const HeaderTimeoutMs = "Mesh-Timeout-Ms"

// MaxTimeoutDigits bounds the length of a [HeaderTimeoutMs] value, as
// Connect bounds Connect-Timeout-Ms: 10 digits are more than 115 days.
const MaxTimeoutDigits = 10

// ParseTimeout decodes a [HeaderTimeoutMs] value. Anything but 1 to
// MaxTimeoutDigits ASCII digits with a value above zero is an error: no
// sign, space, fraction or unit.
func ParseTimeout(s string) (time.Duration, error) {
	if s == "" || len(s) > MaxTimeoutDigits {
		return 0, fmt.Errorf("transport: timeout %.20q: want 1 to %d digits of milliseconds", s, MaxTimeoutDigits)
	}
	var ms int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("transport: timeout %q: want decimal milliseconds", s)
		}
		ms = ms*10 + int64(c-'0') // 10 digits cannot overflow
	}
	if ms == 0 {
		return 0, errors.New("transport: timeout 0: want more than 0 milliseconds")
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// FormatTimeout encodes d for the [HeaderTimeoutMs]: rounded up to whole
// milliseconds, so that the deadline is never shorter than asked, at least
// 1 and at most the largest value the header holds (which a gateway
// bounds to its own maximum anyway).
func FormatTimeout(d time.Duration) string {
	const maxMs = 9_999_999_999
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return strconv.FormatInt(min(max(ms, 1), maxMs), 10)
}
