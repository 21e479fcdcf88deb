package middleware_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/funcmesh/funcmesh/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrape reads reg in the text format, through promhttp over HTTP, as
// Prometheus would.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricsServer mounts a Metrics-wrapped handler on the gateway's pattern.
// The handler answers with the status in the "status" query parameter, or
// blocks until release is closed when "block" is set.
func metricsServer(t *testing.T, opts middleware.MetricsOptions) (*httptest.Server, *prometheus.Registry, chan struct{}, chan struct{}) {
	t.Helper()
	reg := prometheus.NewRegistry()
	mw, err := middleware.Metrics(reg, opts)
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("do") {
		case "block":
			entered <- struct{}{}
			<-release
		case "404":
			w.WriteHeader(404)
		case "panic":
			panic(http.ErrAbortHandler)
		}
		w.Write([]byte("ok"))
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, reg, entered, release
}

func post(t *testing.T, srv *httptest.Server, path string) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader("{}"))
	if err != nil {
		if strings.Contains(path, "panic") {
			return // the aborted response
		}
		t.Fatal(err)
	}
	resp.Body.Close()
}

func wantLine(t *testing.T, text, pattern string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^` + pattern + `$`).MatchString(text) {
		t.Errorf("no line matching %s in:\n%s", pattern, text)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	srv, reg, entered, release := metricsServer(t, middleware.MetricsOptions{})
	post(t, srv, "/fn/payments/charge")
	post(t, srv, "/fn/payments/charge")
	post(t, srv, "/fn/payments/refund?do=404")
	post(t, srv, "/fn/payments/charge?do=panic")
	post(t, srv, "/fn/bad%20name/x")

	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := srv.Client().Post(srv.URL+"/fn/slow/f?do=block", "", nil)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	text := scrape(t, reg)
	wantLine(t, text, `funcmesh_http_requests_in_flight 1`)
	close(release)
	<-done

	text = scrape(t, reg)
	const route = `route="POST /fn/\{service\}/\{function\}"`
	wantLine(t, text, `funcmesh_http_requests_total\{function="charge",`+route+`,service="payments",status="200"\} 2`)
	wantLine(t, text, `funcmesh_http_requests_total\{function="refund",`+route+`,service="payments",status="404"\} 1`)
	wantLine(t, text, `funcmesh_http_requests_total\{function="charge",`+route+`,service="payments",status="500"\} 1`)
	wantLine(t, text, `funcmesh_http_requests_total\{function="\(invalid\)",`+route+`,service="\(invalid\)",status="200"\} 1`)
	wantLine(t, text, `funcmesh_http_requests_total\{function="f",`+route+`,service="slow",status="200"\} 1`)
	wantLine(t, text, `funcmesh_http_request_duration_seconds_count\{function="charge",`+route+`,service="payments",status="200"\} 2`)
	wantLine(t, text, `funcmesh_http_request_duration_seconds_bucket\{function="charge",`+route+`,service="payments",status="200",le="\+Inf"\} 2`)
	wantLine(t, text, `funcmesh_http_requests_in_flight 0`)
}

func TestMetricsMaxFunctions(t *testing.T) {
	t.Parallel()
	srv, reg, _, _ := metricsServer(t, middleware.MetricsOptions{MaxFunctions: 2, Namespace: "app"})
	for _, fn := range []string{"a", "b", "c", "d", "a"} {
		post(t, srv, "/fn/svc/"+fn)
	}
	text := scrape(t, reg)
	wantLine(t, text, `app_http_requests_total\{function="a",.*,service="svc",status="200"\} 2`)
	wantLine(t, text, `app_http_requests_total\{function="b",.*,service="svc",status="200"\} 1`)
	wantLine(t, text, `app_http_requests_total\{function="\(other\)",.*,service="\(other\)",status="200"\} 2`)
	if strings.Contains(text, `function="c"`) || strings.Contains(text, `function="d"`) {
		t.Errorf("pairs past MaxFunctions got their own series:\n%s", text)
	}
}

func TestMetricsRegistration(t *testing.T) {
	t.Parallel()
	if _, err := middleware.Metrics(nil, middleware.MetricsOptions{}); err == nil {
		t.Error("Metrics(nil) succeeded")
	}
	// Twice on one registry: the collectors are shared.
	reg := prometheus.NewRegistry()
	var hs []http.Handler
	for range 2 {
		mw, err := middleware.Metrics(reg, middleware.MetricsOptions{})
		if err != nil {
			t.Fatalf("Metrics: %v", err)
		}
		hs = append(hs, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	}
	for _, h := range hs {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	wantLine(t, scrape(t, reg), `funcmesh_http_requests_total\{function="",route="",service="",status="200"\} 2`)

	// A clashing collector of another type is an error.
	reg = prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "funcmesh_http_requests_total", Help: "x"}))
	if _, err := middleware.Metrics(reg, middleware.MetricsOptions{}); err == nil {
		t.Error("Metrics with a clashing collector succeeded")
	}
}
