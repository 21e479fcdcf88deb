package authz_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
)

// TestWebhookAnswerBound: a webhook that answers {"ack": true} padded past
// authz.MaxHTTPAnswer denies, through HTTP, whether it says its length
// or streams the answer, and the policy stops reading at the bound; an
// answer of exactly the bound is read whole and allows.
func TestWebhookAnswerBound(t *testing.T) {
	t.Parallel()
	var sent atomic.Int64
	// answer writes {"ack": true, "pad": "xxx…"} of n bytes in all.
	answer := func(w http.ResponseWriter, n int, withLength bool) {
		head, tail := `{"ack": true, "pad": "`, `"}`
		if withLength {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, head)
		pad := strings.Repeat("x", 32<<10)
		left := n - len(head) - len(tail)
		for left > 0 {
			k := min(left, len(pad))
			if _, err := io.WriteString(w, pad[:k]); err != nil {
				return // the policy stopped reading
			}
			sent.Add(int64(k))
			left -= k
			if f, ok := w.(http.Flusher); ok && !withLength {
				f.Flush()
			}
		}
		io.WriteString(w, tail)
	}
	const huge = 64 << 20
	mux := http.NewServeMux()
	mux.HandleFunc("POST /huge", func(w http.ResponseWriter, r *http.Request) { answer(w, huge, true) })
	mux.HandleFunc("POST /huge-stream", func(w http.ResponseWriter, r *http.Request) { answer(w, huge, false) })
	mux.HandleFunc("POST /bound", func(w http.ResponseWriter, r *http.Request) { answer(w, authz.MaxHTTPAnswer, false) })
	mux.HandleFunc("POST /over", func(w http.ResponseWriter, r *http.Request) { answer(w, authz.MaxHTTPAnswer+1, false) })
	mux.HandleFunc("POST /redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/bound", http.StatusTemporaryRedirect)
	})
	// drip sends a head that would allow, then nothing until the client
	// goes away.
	mux.HandleFunc("POST /drip", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ack": true, "pad": "`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	hook := httptest.NewServer(mux)
	t.Cleanup(hook.Close)

	rules := `{"services": {"shop": {"functions": {
		"huge":   {"rule": {"rule": "webhook", "url": "` + hook.URL + `/huge"}},
		"stream": {"rule": {"rule": "webhook", "url": "` + hook.URL + `/huge-stream"}},
		"bound":  {"rule": {"rule": "webhook", "url": "` + hook.URL + `/bound"}},
		"over":   {"rule": {"rule": "webhook", "url": "` + hook.URL + `/over"}},
		"redir":  {"rule": {"rule": "webhook", "url": "` + hook.URL + `/redirect"}},
		"drip":   {"rule": {"rule": "webhook", "url": "` + hook.URL + `/drip"}}}}}}`
	a := newAuthorizer(t, authz.RulesJSON([]byte(rules)))
	srv := serve(t, a)
	for _, tt := range []struct {
		function string
		status   int
	}{
		{"huge", http.StatusForbidden},
		{"stream", http.StatusForbidden},
		{"over", http.StatusForbidden},
		{"bound", http.StatusOK},
		{"redir", http.StatusForbidden},
	} {
		sent.Store(0)
		resp, err := http.Post(srv.URL+"/fn/shop/"+tt.function, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d; want %d", tt.function, resp.StatusCode, tt.status)
		}
		// The server may have written some more into the socket's
		// buffers before noticing; never the whole answer.
		if n := sent.Load(); n > 16<<20 {
			t.Errorf("%s: the webhook wrote %d bytes of its answer before the policy gave up; want it cut near %d", tt.function, n, authz.MaxHTTPAnswer)
		}
	}

	// An answer that stops coming denies when the decision's time is up.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if d, err := a.Authorize(ctx, authz.Input{Service: "shop", Function: "drip"}); d.Allow || time.Since(start) > 4*time.Second {
		t.Errorf("a webhook that stops answering mid-body: %+v, %v after %v; want a denial at the deadline", d, err, time.Since(start))
	}
}
