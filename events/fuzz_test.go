package events_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/events"
	"github.com/funcmesh/funcmesh/reqctx"
)

// FuzzEmitHandler drives the emit handler with arbitrary event types,
// Idempotency-Keys, bodies and Content-Types on a real broker: the answer
// is 202 with {"id": ...} or the JSON error body with a 4xx status, and
// the same Idempotency-Key emits the same event ID.
func FuzzEmitHandler(f *testing.F) {
	e := setup(f, nil)
	f.Add("signup", "", []byte(`{"user":"ann"}`), "application/json")
	f.Add("signup", "retry-1", []byte(`{}`), "")
	f.Add("order.paid", "k", []byte(`{}`), "")
	f.Add("*", "", []byte(`{}`), "")
	f.Add(">", "", []byte(`{}`), "")
	f.Add("", "", []byte{}, "")
	f.Add("a b", "\x00", []byte{0xff}, "text/plain")
	f.Add("signup", strings.Repeat("k", 257), []byte(`{}`), "")
	f.Add("signup", "", []byte(`{}`), strings.Repeat("x", 300))
	f.Add("sign\u00e9up", "é", []byte(`[`), "application/cloudevents+json")
	f.Fuzz(func(t *testing.T, typ, key string, body []byte, ct string) {
		h := &events.Handler{Events: e.ev}
		emit := func() *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/fn/events/x", strings.NewReader(string(body)))
			r = r.WithContext(reqctx.WithMaxBodyBytes(r.Context(), 4096)) // as middleware.BodyLimit(4096) does
			r.SetPathValue("service", "events")
			r.SetPathValue("function", typ)
			if key != "" {
				r.Header["Idempotency-Key"] = []string{key}
			}
			if ct != "" {
				r.Header["Content-Type"] = []string{ct}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			return rec
		}
		rec := emit()
		if rec.Code != http.StatusAccepted {
			checkErrorBody(t, rec)
			return
		}
		id := acceptedID(t, rec)
		if key == "" {
			return
		}
		again := emit()
		if again.Code != http.StatusAccepted || acceptedID(t, again) != id {
			t.Fatalf("the same Idempotency-Key emitted %q then %d %s", id, again.Code, again.Body)
		}
	})
}

func acceptedID(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var acc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &acc); err != nil || acc.ID == "" {
		t.Fatalf("202 body %q: %v", rec.Body, err)
	}
	return acc.ID
}

// checkErrorBody fails unless rec is a 4xx answer with the JSON error body.
func checkErrorBody(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 || rec.Code > 499 {
		t.Fatalf("status %d, want 4xx; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error with Content-Type %q", ct)
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("status %d without the JSON error body: %q", rec.Code, rec.Body)
	}
}
