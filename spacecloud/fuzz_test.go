package spacecloud_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/spacecloud"
	"github.com/funcmesh/funcmesh/transport"
)

// FuzzEnvelope sends arbitrary request bodies to the Handler: a body
// ParseEnvelope refuses is answered 400 with {"error": "..."} and never
// reaches Next; any other reaches Next with exactly the "params" member as
// its body (valid JSON, or empty for none) and the timeout as a valid
// Mesh-Timeout-Ms header; and whatever Next answers comes back as
// {"result": ...} or {"error": "..."}.
func FuzzEnvelope(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"params": {"a": 1}, "timeout": 5}`, `{"params": null}`, `{"timeout": 0.001}`,
		`{"timeout": -1}`, `{"timeout": "5"}`, `{"timeout": 1e400}`, `{"timeout": 1e-400}`, `[1]`, `null`,
		`{"params": 1, "params": 2}`, `{"params": "\u0000"}`, `{"params": [` + "\xff" + `]}`, `{"a":1} x`, ` {"params":true} `,
	} {
		f.Add([]byte(s), []byte(`{"ok":true}`), "application/json", 200)
	}
	f.Add([]byte(`{}`), []byte(`{"error":{"code":"permission_denied","message":"no"}}`), "application/json", 403)
	f.Add([]byte(`{}`), []byte("\xff\xfe"), "text/plain", 200)
	f.Add([]byte(`{}`), []byte(`{"a":`), "application/json", 200)
	f.Fuzz(func(t *testing.T, body, answer []byte, contentType string, status int) {
		if status < 200 || status > 599 {
			status = 200
		}
		var (
			reached bool
			got     []byte
			timeout []string
		)
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached = true
			got, _ = io.ReadAll(r.Body)
			timeout = r.Header.Values(transport.HeaderTimeoutMs)
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			_, _ = w.Write(answer)
		})
		h := &spacecloud.Handler{Next: next}
		req := httptest.NewRequest(http.MethodPost, "/v1/api/p/services/s/f", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		var out map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out) != 1 {
			t.Fatalf("body %q: answer %d %q is not {\"result\"} or {\"error\"}", body, rec.Code, rec.Body)
		}
		var msg string
		if e, ok := out["error"]; ok && (json.Unmarshal(e, &msg) != nil || msg == "" || rec.Code < 300) {
			t.Fatalf("body %q: answer %d %s; want an error message with a status of 300 or more", body, rec.Code, rec.Body)
		}
		if _, ok := out["result"]; ok && rec.Code != 200 {
			t.Fatalf("body %q: answer %d %s; want a result with 200", body, rec.Code, rec.Body)
		}

		env, err := spacecloud.ParseEnvelope(body)
		if err != nil {
			if reached || rec.Code != http.StatusBadRequest || msg != err.Error() {
				t.Fatalf("body %q refused (%v): Next reached %v, answer %d %s; want 400 with that error and Next not reached", body, err, reached, rec.Code, rec.Body)
			}
			return
		}
		if !reached {
			t.Fatalf("body %q accepted: Next not reached (%d %s)", body, rec.Code, rec.Body)
		}
		if !bytes.Equal(got, env.Params) || len(got) > 0 && !json.Valid(got) {
			t.Fatalf("body %q: Next got %q; want the params %q, valid JSON", body, got, env.Params)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(body, &members); len(bytes.TrimSpace(body)) > 0 && err != nil {
			t.Fatalf("body %q accepted but is not a JSON object: %v", body, err)
		}
		if p := members["params"]; string(p) != "null" && !bytes.Equal(p, env.Params) {
			t.Fatalf("body %q: params %q; want the member %q", body, env.Params, p)
		}
		switch {
		case env.Timeout < 0 || env.Timeout > 9_999_999_999*time.Millisecond:
			t.Fatalf("body %q: timeout %v out of range", body, env.Timeout)
		case env.Timeout == 0 && len(timeout) != 0:
			t.Fatalf("body %q: no timeout, but Next got %s %v", body, transport.HeaderTimeoutMs, timeout)
		case env.Timeout > 0:
			if len(timeout) != 1 {
				t.Fatalf("body %q: timeout %v, Next got %s %v", body, env.Timeout, transport.HeaderTimeoutMs, timeout)
			}
			d, err := transport.ParseTimeout(timeout[0])
			if err != nil || d < env.Timeout || d-env.Timeout >= time.Millisecond {
				t.Fatalf("body %q: timeout %v sent as %s %q (%v, %v)", body, env.Timeout, transport.HeaderTimeoutMs, timeout[0], d, err)
			}
		}
	})
}
