package middleware_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/justinas/alice"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// wrappingChain is every middleware that wraps the ResponseWriter.
func wrappingChain(t *testing.T) (alice.Chain, *logBuffer) {
	t.Helper()
	logger, logs := newLog()
	metrics, err := middleware.Metrics(prometheus.NewRegistry(), middleware.MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	return alice.New(middleware.AccessLog(logger), metrics,
		middleware.Tracing(middleware.TracingOptions{TracerProvider: tp}), middleware.Recover(nil)), logs
}

// TestResponseControllerThroughWrappers: a streaming handler behind every
// wrapper can flush (the client reads the first part before the handler
// writes the second) and set deadlines, through http.ResponseController
// and through the http.Flusher type assertion.
func TestResponseControllerThroughWrappers(t *testing.T) {
	t.Parallel()
	chain, logs := wrappingChain(t)
	clientRead := make(chan struct{})
	handlerErr := make(chan error, 1)
	srv := httptest.NewServer(chain.ThenFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			handlerErr <- err
			return
		}
		if err := rc.EnableFullDuplex(); err != nil {
			handlerErr <- err
			return
		}
		w.Write([]byte("first\n"))
		if err := rc.Flush(); err != nil {
			handlerErr <- err
			return
		}
		select {
		case <-clientRead:
		case <-r.Context().Done():
			handlerErr <- r.Context().Err()
			return
		}
		w.Write([]byte("second\n"))
		w.(http.Flusher).Flush()
		handlerErr <- nil
	}))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(clientRead)
	rest, _ := io.ReadAll(br)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
	if err := <-handlerErr; err != nil {
		t.Fatalf("handler: %v", err)
	}
	if recs := logs.records(t); len(recs) != 1 || recs[0]["bytes"] != float64(13) || recs[0]["status"] != float64(200) {
		t.Errorf("access log %v; want 13 bytes, status 200", recs)
	}
}

func TestHijackThroughWrappers(t *testing.T) {
	t.Parallel()
	chain, _ := wrappingChain(t)
	srv := httptest.NewServer(chain.ThenFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		brw.Flush()
	}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "hijacked" {
		t.Errorf("body %q; want the hijacked connection's", b)
	}
}

// TestFlushWithoutFlusher: Flush on a writer that cannot flush reports
// http.ErrNotSupported through ResponseController and does not panic.
func TestFlushWithoutFlusher(t *testing.T) {
	t.Parallel()
	chain, _ := wrappingChain(t)
	var flushErr error
	h := chain.ThenFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		flushErr = http.NewResponseController(w).Flush()
	})
	h.ServeHTTP(plainWriter{httptest.NewRecorder()}, httptest.NewRequest("GET", "/", nil))
	if flushErr == nil || !strings.Contains(flushErr.Error(), "not supported") {
		t.Errorf("Flush error %v; want http.ErrNotSupported", flushErr)
	}
}

// plainWriter hides every method but those of http.ResponseWriter.
type plainWriter struct{ w http.ResponseWriter }

func (p plainWriter) Header() http.Header         { return p.w.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.w.WriteHeader(code) }

// TestInformationalStatus: a 103 Early Hints does not count as the final
// status.
func TestInformationalStatus(t *testing.T) {
	t.Parallel()
	logger, logs := newLog()
	h := middleware.AccessLog(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusAccepted)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if recs := logs.records(t); len(recs) != 1 || recs[0]["status"] != float64(202) {
		t.Errorf("records %v; want status 202", recs)
	}
}
