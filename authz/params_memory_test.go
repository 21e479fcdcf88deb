package authz_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/transport"
)

// TestDecodeCostEstimate holds the estimate the decoder makes before
// decoding params whole to what decoding them (into Go values, then OPA
// values) really allocates: the estimate must not be below it, or the
// bound on a decoding's memory would not hold.
//
// What the process allocates is measured around each decoding, the least
// of five, so that a goroutine of another test allocating meanwhile does
// not count. Under the race detector allocations differ from a normal
// build's, so it skips.
func TestDecodeCostEstimate(t *testing.T) {
	// Not parallel: it measures what the process allocates.
	if raceEnabled {
		t.Skip("the race detector changes what decoding allocates")
	}
	rep := func(elem string, n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + "]"
	}
	keys := func(n int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26%5) + `":1`)
		}
		b.WriteString("}")
		return b.String()
	}
	docs := map[string]string{
		"empty objects":    rep("{}", 20000),
		"empty arrays":     rep("[]", 20000),
		"small numbers":    rep("1", 30000),
		"nulls":            rep("null", 20000),
		"short strings":    rep(`"a"`, 20000),
		"long strings":     rep(`"`+strings.Repeat("s", 1000)+`"`, 50),
		"objects of one":   rep(`{"a":1}`, 10000),
		"many keys":        keys(600),
		"nested":           strings.Repeat(`{"a":[`, 30) + "1" + strings.Repeat("]}", 30),
		"typical call":     `{"amount": 5, "currency": "EUR", "memo": "coffee", "items": [{"sku": "a1", "n": 2}]}`,
		"numbers of 100ch": rep("1"+strings.Repeat("0", 99), 500),
	}
	for name, doc := range docs {
		data := []byte(doc)
		est, err := authz.DecodeCost(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := int64(-1)
		for range 5 {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err = authz.DecodeParams(data, false)
			runtime.ReadMemStats(&after)
			if n := int64(after.TotalAlloc - before.TotalAlloc); got < 0 || n < got {
				got = n
			}
		}
		if err != nil {
			if limit := authz.MaxDecodeFactor*int64(len(data)) + authz.DecodeSlack; est <= limit {
				t.Errorf("%s: refused (%v) though the estimate %d is within %d", name, err, est, limit)
			}
			t.Logf("%-16s %7d bytes: estimate %8d (%5.1f×): refused", name, len(data), est, float64(est)/float64(len(data)))
			continue
		}
		t.Logf("%-16s %7d bytes: estimate %8d (%5.1f×), allocated %8d (%5.1f×)",
			name, len(data), est, float64(est)/float64(len(data)), got, float64(got)/float64(len(data)))
		if got > est+16<<10 {
			t.Errorf("%s: decoding allocated %d bytes; the estimate was %d", name, got, est)
		}
	}
}

// TestMaxDecoding: while every decoding slot is taken, a call whose
// params must be decoded is answered 429 before its body is decoded, and
// one whose policy does not read params is not held up. Issue 16, item 1.
func TestMaxDecoding(t *testing.T) {
	t.Parallel()
	const policy = `package funcmesh.authz
allow if input.params.amount < 10
allow if input.function == "free"
`
	entered, release := make(chan struct{}), make(chan struct{})
	a := newAuthorizer(t, authz.Module("p.rego", policy), authz.WithMaxDecoding(1),
		authz.WithDecisionHook(func(ctx context.Context, i authz.DecisionInfo) {
			if i.Function == "hold" {
				entered <- struct{}{}
				<-release
			}
		}))
	srv := serve(t, a)
	held := make(chan answer, 1)
	go func() { held <- doAsync(srv, call{path: "/fn/s/hold", body: `{"amount": 1}`}) }()
	<-entered
	got := do(t, srv, call{path: "/fn/s/charge", body: `{"amount": 1}`})
	if got.status != http.StatusTooManyRequests || got.errCode != transport.CodeResourceExhausted {
		t.Errorf("with the slot taken: %d %s; want 429", got.status, got.body)
	}
	in := authz.Input{Service: "s", Function: "charge", Params: json.RawMessage(`{"amount": 1}`)}
	if d, err := a.Authorize(context.Background(), in); d.Allow || transport.CodeOf(err) != transport.CodeResourceExhausted {
		t.Errorf("Authorize with the slot taken: %+v, %v; want resource_exhausted", d, err)
	}
	close(release)
	if h := <-held; h.status != 200 {
		t.Errorf("the call holding the slot: %d %s", h.status, h.body)
	}
	if got := do(t, srv, call{path: "/fn/s/charge", body: `{"amount": 1}`}); got.status != 200 {
		t.Errorf("after the slot was given back: %d %s; want 200", got.status, got.body)
	}
	if _, err := authz.New(context.Background(), authz.Module("p.rego", policy), authz.WithMaxDecoding(0)); err == nil {
		t.Error("WithMaxDecoding(0) accepted")
	}
}

// doAsync is do for other goroutines: it reports failures in the answer.
func doAsync(srv *httptest.Server, c call) answer {
	resp, err := srv.Client().Post(srv.URL+c.path, "application/json", strings.NewReader(c.body))
	if err != nil {
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b)}
}

// TestParamsDecodedAsRead: a policy that reads input.params.amount gets
// bodies of any shape decoded as far as amount, so 1 MiB of [{},{},…] is
// never built; a policy that reads params whole gets them only when they
// decode within the bound, and 413 otherwise. Issue 16, item 1.
func TestParamsDecodedAsRead(t *testing.T) {
	t.Parallel()
	worst := "[" + strings.Repeat("{},", 300<<10) + "{}]" // ≈ 900 KiB
	padded := `{"amount": 5, "pad": ` + worst + `}`
	tests := []struct {
		name, policy, body string
		want               int
	}{
		{"path, array", "allow if not input.params.amount", worst, 200},
		{"path, padded object", "allow if input.params.amount == 5", padded, 200},
		{"path read whole, too costly", "allow if count(input.params.pad) > 0", padded, 413},
		{"whole, too costly", "allow if count(input.params) > 0", worst, 413},
		{"whole, typical", "allow if input.params.amount == 5\nallow if count(input.params) < 0", `{"amount": 5, "memo": "x"}`, 200},
		{"path, malformed beyond it", "allow if input.params.amount == 5", `{"amount": 5, "pad": [1,}`, 400},
		{"path, case collision beyond it", "allow if input.params.amount == 5", `{"amount": 5, "pad": {"x": 1, "X": 2}}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAuthorizer(t, authz.Module("p.rego", "package funcmesh.authz\n"+tt.policy+"\n"))
			got := do(t, serve(t, a), call{path: "/fn/s/f", body: tt.body})
			if got.status != tt.want {
				t.Errorf("%d %.200s; want %d", got.status, got.body, tt.want)
			}
			if got.status == 200 && got.body != tt.body {
				t.Error("the body did not reach next unchanged")
			}
		})
	}
}
