package tasks_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/tasks"
)

// preferAsyncRef is a plain reading of RFC 7240: each Prefer header is a
// comma-separated list of preferences, a preference is a token with
// optional parameters after ";", tokens compare case-insensitively.
func preferAsyncRef(values []string) bool {
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			tok := pref
			if i := strings.IndexByte(pref, ';'); i >= 0 {
				tok = pref[:i]
			}
			if strings.ToLower(strings.Trim(tok, " \t")) == "respond-async" {
				return true
			}
		}
	}
	return false
}

func FuzzPreferAsync(f *testing.F) {
	for _, s := range []string{
		"respond-async", "Respond-Async", "respond-async, wait=10", "wait=5; foo, respond-async ;x=1",
		"return=minimal", "respond-async=1", "respond-asyncx", "", ",,,", " \t respond-async\t",
		"handling=lenient,RESPOND-ASYNC", "respond-\x00async", "\"respond-async\"", "respond-async;",
		"r\u0130spond-async",
	} {
		f.Add(s, "")
	}
	f.Add("wait=1", "respond-async")
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{}
		h.Add("Prefer", a)
		if b != "" {
			h.Add("Prefer", b)
		}
		got, want := tasks.PreferAsync(h), preferAsyncRef(h.Values("Prefer"))
		if got != want {
			t.Fatalf("PreferAsync(%q) = %v, the RFC 7240 reading says %v", h.Values("Prefer"), got, want)
		}
	})
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

// FuzzAsyncHandler drives the async handler with arbitrary Prefer,
// Idempotency-Key, service/function names, body and Content-Type, on a
// real broker: the answer is 202 with Location and Preference-Applied, or
// the JSON error body with a 4xx status; a request that does not ask for
// respond-async reaches Next.
func FuzzAsyncHandler(f *testing.F) {
	e := newEnv(f, tasks.Options{})
	f.Add("respond-async", "", "billing", "charge", []byte(`{"amount":3}`), "application/json")
	f.Add("respond-async, wait=10", "order-42", "billing", "charge", []byte(`{}`), "")
	f.Add("return=minimal", "", "billing", "charge", []byte(`{}`), "")
	f.Add("respond-async", strings.Repeat("k", 300), "billing", "charge", []byte(`{}`), "")
	f.Add("respond-async", "k\x00\r\n", "../..", "fn.*>", []byte(`null`), "text/plain")
	f.Add("respond-async", "", "", "", []byte{}, "")
	f.Add("respond-async", "", "billing", "charge", []byte{0xff, 0xfe}, strings.Repeat("x", 1000))
	f.Add("RESPOND-ASYNC;x", "a b", "svc with space", "fn\u00e9", []byte(`[1,2`), "application/json; charset=utf-8")
	f.Fuzz(func(t *testing.T, prefer, key, service, function string, body []byte, ct string) {
		nextCalled := false
		h := &tasks.Handler{
			Tasks: e.q,
			Next:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { nextCalled = true; w.WriteHeader(http.StatusTeapot) }),
			Route: func(*http.Request) (string, string) { return service, function },
		}
		r := httptest.NewRequest(http.MethodPost, "/fn/x/y", strings.NewReader(string(body)))
		r = r.WithContext(reqctx.WithMaxBodyBytes(r.Context(), 4096)) // as middleware.BodyLimit(4096) does
		r.Header["Prefer"] = []string{prefer}
		if key != "" {
			r.Header["Idempotency-Key"] = []string{key}
		}
		if ct != "" {
			r.Header["Content-Type"] = []string{ct}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if !tasks.PreferAsync(r.Header) {
			if !nextCalled {
				t.Fatalf("a request without respond-async did not reach Next (status %d)", rec.Code)
			}
			return
		}
		if nextCalled {
			t.Fatal("an async request reached Next")
		}
		if rec.Code != http.StatusAccepted {
			checkErrorBody(t, rec)
			return
		}
		var acc tasks.Accepted
		if err := json.Unmarshal(rec.Body.Bytes(), &acc); err != nil {
			t.Fatalf("202 body %q: %v", rec.Body, err)
		}
		if !tasks.ValidID(acc.ID) {
			t.Fatalf("202 with task ID %q", acc.ID)
		}
		if loc := rec.Header().Get("Location"); loc != "/tasks/"+acc.ID || acc.Status != loc {
			t.Fatalf("202 with Location %q, status %q, ID %q", loc, acc.Status, acc.ID)
		}
		if pa := rec.Header().Get("Preference-Applied"); pa != "respond-async" {
			t.Fatalf("202 with Preference-Applied %q", pa)
		}
	})
}

// FuzzStatusHandler reads arbitrary task IDs through the status handler on
// a real broker: an ID that is not a valid task ID is a 404 JSON error; a
// valid one that names no task is too; only the enqueued task is 200.
func FuzzStatusHandler(f *testing.F) {
	e := newEnv(f, tasks.Options{})
	rc, err := e.q.Enqueue(f.Context(), tasks.Call{Service: "nosuch", Function: "fn", Params: []byte(`{}`)})
	if err != nil {
		f.Fatal(err)
	}
	real := rc.ID
	f.Add(real)
	f.Add(strings.ToUpper(real))
	f.Add(real[:len(real)-1])
	f.Add(real + "a")
	f.Add("")
	f.Add("*")
	f.Add(">")
	f.Add("../../etc/passwd")
	f.Add(strings.Repeat("a", len(real)))
	f.Add(strings.Repeat("a", len(real)-1) + ".")
	f.Add("fmtask.*.*.x")
	h := e.q.StatusHandler()
	f.Fuzz(func(t *testing.T, id string) {
		r := httptest.NewRequest(http.MethodGet, "/tasks/x", nil)
		r.SetPathValue("id", id)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if id == real {
			if rec.Code != http.StatusOK {
				t.Fatalf("the enqueued task: status %d %s", rec.Code, rec.Body)
			}
			var st tasks.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.ID != real {
				t.Fatalf("status body %q: %v", rec.Body, err)
			}
			return
		}
		checkErrorBody(t, rec)
		if !tasks.ValidID(id) && rec.Code != http.StatusNotFound && rec.Code != http.StatusBadRequest {
			t.Fatalf("invalid ID %q: status %d", id, rec.Code)
		}
		if rec.Code != http.StatusNotFound {
			t.Fatalf("ID %q of no task: status %d, want 404", id, rec.Code)
		}
	})
}
