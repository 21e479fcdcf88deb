package middleware_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

// logBuffer is a JSON slog logger whose records a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLog() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the records logged so far.
func (l *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestRecover(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	h := middleware.RequestID(middleware.Recover(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Half-Done", "1")
		panic("boom: secret detail")
	})))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/some/path")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("status = %d; want 500", resp.StatusCode)
	}
	e, id := readError(t, resp)
	if e.Code() != transport.CodeInternal || strings.Contains(e.Message(), "secret") {
		t.Errorf("error %v; want internal without the panic's text", e)
	}
	if id == "" || id != resp.Header.Get(transport.HeaderXRequestID) {
		t.Errorf("request_id %q; want the response's X-Request-Id", id)
	}
	recs := logs.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d log records; want 1: %s", len(recs), logs)
	}
	rec := recs[0]
	if rec["level"] != "ERROR" || rec["panic"] != "boom: secret detail" || rec["path"] != "/some/path" || rec["request_id"] != id {
		t.Errorf("log record %v", rec)
	}
	if stack, _ := rec["stack"].(string); !strings.Contains(stack, "recover_test.go") {
		t.Errorf("stack %q does not show the handler", stack)
	}
}

// TestRecoverAfterWrite: once the body has started the client must see a
// failure, not a short body that looks complete.
func TestRecoverAfterWrite(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	h := middleware.Recover(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic("late")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d; want the 200 already sent", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("body %q read without error; want the response aborted", body)
	}
	if recs := logs.records(t); len(recs) != 1 || recs[0]["panic"] != "late" {
		t.Errorf("log %s; want the panic reported", logs)
	}
}

func TestRecoverRepanicsErrAbortHandler(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	h := middleware.Recover(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Errorf("recover() = %v; want http.ErrAbortHandler", p)
		}
		if s := logs.String(); s != "" {
			t.Errorf("logged %s; want nothing", s)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	t.Error("ServeHTTP returned")
}

func TestRecoverValues(t *testing.T) {
	t.Parallel()
	for name, p := range map[string]any{
		"error":  errors.New("an error"),
		"nil":    nil, // a *runtime.PanicNilError since Go 1.21
		"number": 42,
	} {
		h := middleware.Recover(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			panic(p)
		}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 500 || !strings.Contains(w.Body.String(), `"internal"`) {
			t.Errorf("panic(%s): %d %q; want a 500 JSON error", name, w.Code, w.Body)
		}
	}
}

func TestRecoverNoPanic(t *testing.T) {
	t.Parallel()
	h := middleware.Recover(nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusTeapot || w.Body.Len() != 0 {
		t.Errorf("%d %q; want the handler's 418", w.Code, w.Body)
	}
}
