package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

func TestAccessLog(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", middleware.RequestID(middleware.AccessLog(logger)(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("hello"))
		}))))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/fn/payments/charge?token=secret-in-query", strings.NewReader(`{"card":"secret-in-body"}`))
	req.Header.Set("Authorization", "Bearer secret-token")
	req.Header.Set(transport.HeaderXRequestID, "req-1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	recs := logs.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records; want 1: %s", len(recs), logs)
	}
	rec := recs[0]
	want := map[string]any{
		"level": "INFO", "msg": "http request", "method": "POST", "path": "/fn/payments/charge",
		"status": float64(201), "bytes": float64(5), "request_id": "req-1",
		"route": "POST /fn/{service}/{function}", "service": "payments", "function": "charge",
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v; want %v", k, rec[k], v)
		}
	}
	if d, ok := rec["duration"].(float64); !ok || d <= 0 {
		t.Errorf("duration = %v; want a positive number of nanoseconds", rec["duration"])
	}
	if rec["remote"] == "" {
		t.Error("no remote address")
	}
	if _, ok := rec["panic"]; ok {
		t.Error("panic logged for a request that did not panic")
	}
	if s := logs.String(); strings.Contains(s, "secret") {
		t.Errorf("the log holds a secret: %s", s)
	}
}

// TestAccessLogOrder: whichever side of RequestID and Recover it is on,
// the access log sees the request ID and the status sent.
func TestAccessLogOrder(t *testing.T) {
	t.Parallel()
	panics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	for name, build := range map[string]func(*testing.T) (http.Handler, *logBuffer){
		"AccessLog, RequestID, Recover": func(t *testing.T) (http.Handler, *logBuffer) {
			logger, logs := newLog()
			return middleware.AccessLog(logger)(middleware.RequestID(middleware.Recover(nil)(panics))), logs
		},
		"RequestID, Recover, AccessLog": func(t *testing.T) (http.Handler, *logBuffer) {
			logger, logs := newLog()
			return middleware.RequestID(middleware.Recover(nil)(middleware.AccessLog(logger)(panics))), logs
		},
	} {
		t.Run(name, func(t *testing.T) {
			h, logs := build(t)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
			if w.Code != 500 {
				t.Fatalf("status %d; want 500", w.Code)
			}
			recs := logs.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records; want 1", len(recs))
			}
			if recs[0]["status"] != float64(500) || recs[0]["request_id"] != w.Header().Get(transport.HeaderXRequestID) {
				t.Errorf("record %v; want status 500 and request ID %q", recs[0], w.Header().Get(transport.HeaderXRequestID))
			}
		})
	}
}

func TestAccessLogPanicPassesThrough(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	h := middleware.AccessLog(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recover() = %v; want http.ErrAbortHandler", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	}()
	recs := logs.records(t)
	if len(recs) != 1 || recs[0]["panic"] != true || recs[0]["status"] != float64(500) {
		t.Errorf("records %v; want one with panic=true, status 500", recs)
	}
}

func TestAccessLogNilLogger(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h := middleware.AccessLog(nil)(next)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 200 {
		t.Errorf("status %d", w.Code)
	}
}
