package reliability_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestTraceContextBounded: with the Tracing middleware in the chain, the
// trace context a client sends is carried on to the function, but only
// within the W3C bounds (issue 16, item 6): a well-formed traceparent, and
// a tracestate of at most 32 members and 512 characters, the size the
// W3C asks to propagate at least, instead of the 16 KB a client can send.
func TestTraceContextBounded(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	newCatchAll(t, b)
	g := newGateway(t, b.Conn(), gatewayConfig{Tracing: true})
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	parent := "00-" + traceID + "-b7ad6b7169203331-01"

	member := func(i, size int) string { // a member of size characters
		k := fmt.Sprintf("k%02d", i)
		return k + "=" + strings.Repeat("v", size-len(k)-1)
	}
	var big, bigKeys, many []string
	for i := range 32 {
		big = append(big, member(i, 256)) // 32 × 256: 8 KB
		bigKeys = append(bigKeys, fmt.Sprintf("t%02d", i)+strings.Repeat("a", 238)+"@"+strings.Repeat("s", 13)+"="+strings.Repeat("v", 255))
	}
	for i := range 40 {
		many = append(many, member(i, 8))
	}
	small := "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"

	tests := []struct {
		name  string
		state string
		want  string // the tracestate the function must get; "-" for any within the bounds
	}{
		{"small, kept as it is", small, small},
		{"32 members of 256 characters (8 KB)", strings.Join(big, ","), "-"},
		{"32 members with the longest keys and values (16 KB)", strings.Join(bigKeys, ","), "-"},
		{"40 members (over the W3C's 32)", strings.Join(many, ","), ""},
		{"large members behind small ones", small + "," + strings.Join(big[:20], ","), small},
	}
	for _, tt := range tests {
		a := g.post("trace", "fn", `{}`, "Traceparent", parent, "Tracestate", tt.state)
		d, err := decodeDump(a)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		tp := d.Header.Get("traceparent")
		if !strings.HasPrefix(tp, "00-"+traceID+"-") || len(tp) != len(parent) {
			t.Errorf("%s: traceparent %q; want the client's trace %s carried on", tt.name, tp, traceID)
		}
		ts := strings.Join(d.Header["tracestate"], ",")
		if len(ts) > 512 || strings.Count(ts, ",") >= 32 {
			t.Errorf("%s: the function got a tracestate of %d characters, %d members; want at most 512 and 32", tt.name, len(ts), strings.Count(ts, ",")+1)
		}
		if tt.want != "-" && ts != tt.want {
			t.Errorf("%s: tracestate %.80q; want %q", tt.name, ts, tt.want)
		}
	}
}
