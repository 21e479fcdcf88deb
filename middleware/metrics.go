package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/funcmesh/funcmesh/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// MetricsOptions configures [Metrics]. The zero value is the default.
type MetricsOptions struct {
	// Namespace prefixes the metric names; "funcmesh" by default.
	Namespace string

	// ConstLabels are added to every metric, to tell apart two servers
	// that share a registry.
	ConstLabels prometheus.Labels

	// Buckets are the latency histogram's bucket bounds in seconds;
	// prometheus.DefBuckets by default.
	Buckets []float64

	// MaxFunctions bounds the distinct service/function label pairs
	// (1000 by default). The names come from the URL, so without a bound
	// a client could create series without end; requests for pairs past
	// the bound are counted under service and function "(other)".
	MaxFunctions int
}

// Label values that cannot be names of services or functions.
const (
	metricsOther   = "(other)"
	metricsInvalid = "(invalid)"
)

// Metrics returns middleware that records Prometheus metrics of the
// requests through it, registered with reg:
//
//	funcmesh_http_requests_total{route,service,function,status}          counter
//	funcmesh_http_request_duration_seconds{route,service,function,status} histogram
//	funcmesh_http_requests_in_flight                                      gauge
//
// route is the mux pattern that matched (r.Pattern), service and function
// the {service} and {function} path values ("" when the route has none,
// "(invalid)" when they are not valid names, "(other)" past
// MaxFunctions), status the status code sent (500 for a handler that
// panicked before writing one).
//
// Serve reg with promhttp.HandlerFor. Calling Metrics again with the same
// registry, namespace and const labels shares the collectors. It returns
// an error when reg is nil or registration fails.
func Metrics(reg prometheus.Registerer, opts MetricsOptions) (func(http.Handler) http.Handler, error) {
	if reg == nil {
		return nil, errors.New("middleware: Metrics: nil prometheus.Registerer")
	}
	if opts.Namespace == "" {
		opts.Namespace = "funcmesh"
	}
	if opts.Buckets == nil {
		opts.Buckets = prometheus.DefBuckets
	}
	if opts.MaxFunctions <= 0 {
		opts.MaxFunctions = 1000
	}
	labels := []string{"route", "service", "function", "status"}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: opts.Namespace, Subsystem: "http", Name: "requests_total",
		Help:        "HTTP requests served, by route, service, function and status.",
		ConstLabels: opts.ConstLabels,
	}, labels)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: opts.Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:        "Time to serve HTTP requests, by route, service, function and status.",
		ConstLabels: opts.ConstLabels,
		Buckets:     opts.Buckets,
	}, labels)
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: opts.Namespace, Subsystem: "http", Name: "requests_in_flight",
		Help:        "HTTP requests being served.",
		ConstLabels: opts.ConstLabels,
	})
	var err error
	if requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	if inFlight, err = register(reg, inFlight); err != nil {
		return nil, err
	}
	names := &nameSet{max: opts.MaxFunctions, seen: make(map[[2]string]struct{})}

	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			inFlight.Inc()
			rw := wrapResponseWriter(w)
			done := false
			defer func() {
				inFlight.Dec()
				status := rw.statusCode()
				if !done && !rw.started() {
					status = http.StatusInternalServerError
				}
				svc, fn := names.labels(r.PathValue("service"), r.PathValue("function"))
				lv := []string{r.Pattern, svc, fn, strconv.Itoa(status)}
				// The label values are valid UTF-8 and of the right number, so
				// these cannot fail.
				if c, err := requests.GetMetricWithLabelValues(lv...); err == nil {
					c.Inc()
				}
				if o, err := duration.GetMetricWithLabelValues(lv...); err == nil {
					o.Observe(time.Since(start).Seconds())
				}
			}()
			next.ServeHTTP(rw, r)
			done = true
		})
	}, nil
}

// register registers c with reg, or returns the collector of the same
// description registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("middleware: Metrics: %w", err)
}

// nameSet admits up to max distinct service/function pairs as label
// values.
type nameSet struct {
	max  int
	mu   sync.RWMutex
	seen map[[2]string]struct{}
}

func (s *nameSet) labels(svc, fn string) (string, string) {
	if svc == "" && fn == "" {
		return "", ""
	}
	if (svc != "" && transport.ValidateName(svc) != nil) || (fn != "" && transport.ValidateName(fn) != nil) {
		return metricsInvalid, metricsInvalid
	}
	k := [2]string{svc, fn}
	s.mu.RLock()
	_, ok := s.seen[k]
	n := len(s.seen)
	s.mu.RUnlock()
	if ok {
		return svc, fn
	}
	if n >= s.max {
		return metricsOther, metricsOther
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[k]; !ok {
		if len(s.seen) >= s.max {
			return metricsOther, metricsOther
		}
		s.seen[k] = struct{}{}
	}
	return svc, fn
}
