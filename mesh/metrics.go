package mesh

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/funcmesh/funcmesh/transport"
)

// codeOK is the code label of a successful call.
const codeOK transport.Code = "ok"

// MaxMetricFunctions bounds how many service/function label pairs a
// [Metrics] records. Names come from callers (the gateway passes whatever
// the URL says), so past the bound calls are counted under
// service="_other", function="_other" rather than growing the series
// without limit.
const MaxMetricFunctions = 1000

// otherLabel replaces service and function names past MaxMetricFunctions.
const otherLabel = "_other"

// Metrics is a prometheus.Collector of mesh-level counters, shared by the
// clients and services given [WithMetrics]. Register it with a registry of
// your own:
//
//	m := mesh.NewMetrics()
//	reg.MustRegister(m)
//	client, _ := mesh.NewClient(nc, mesh.WithMetrics(m))
//
// It exposes
//
//	funcmesh_client_calls_total{service,function,code}     calls made; code is "ok" or the error code
//	funcmesh_client_no_responders_total{service,function}  calls no instance was there to answer
//	funcmesh_client_timeouts_total{service,function}       calls whose deadline passed
//	funcmesh_client_retries_total{service,function}        attempts sent again after a 429
//	funcmesh_service_calls_total{service,function,code}    calls served (refusals at capacity: resource_exhausted)
//	funcmesh_service_panics_total{service,function}        functions that panicked
//	funcmesh_service_in_flight{service}                    calls running now
//
// A nil *Metrics counts nothing.
type Metrics struct {
	clientCalls     *prometheus.CounterVec
	clientNoResp    *prometheus.CounterVec
	clientTimeouts  *prometheus.CounterVec
	clientRetries   *prometheus.CounterVec
	serviceCalls    *prometheus.CounterVec
	servicePanics   *prometheus.CounterVec
	serviceInFlight *prometheus.GaugeVec

	seen  sync.Map // fnKey → struct{}
	nseen atomic.Int64
}

type fnKey struct{ service, function string }

// NewMetrics returns a set of mesh counters, not yet registered.
func NewMetrics() *Metrics {
	fn := []string{"service", "function"}
	fnCode := []string{"service", "function", "code"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "funcmesh", Name: name, Help: help}, labels)
	}
	return &Metrics{
		clientCalls:    counter("client_calls_total", "Calls made by mesh clients, by service, function and result code (ok or the error code).", fnCode),
		clientNoResp:   counter("client_no_responders_total", "Calls no service instance was running to answer.", fn),
		clientTimeouts: counter("client_timeouts_total", "Calls whose deadline passed before a reply.", fn),
		clientRetries:  counter("client_retries_total", "Call attempts sent again after an instance refused them at its concurrency limit.", fn),
		serviceCalls:   counter("service_calls_total", "Calls served by service instances, by service, function and result code.", fnCode),
		servicePanics:  counter("service_panics_total", "Functions that panicked.", fn),
		serviceInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "funcmesh", Name: "service_in_flight", Help: "Calls service instances are running now.",
		}, []string{"service"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.clientCalls, m.clientNoResp, m.clientTimeouts, m.clientRetries, m.serviceCalls, m.servicePanics, m.serviceInFlight}
}

// labels returns the label values for a function, bounded by
// MaxMetricFunctions.
func (m *Metrics) labels(service, function string) (string, string) {
	k := fnKey{service, function}
	if _, ok := m.seen.Load(k); ok {
		return service, function
	}
	if m.nseen.Add(1) > MaxMetricFunctions {
		m.nseen.Add(-1)
		return otherLabel, otherLabel
	}
	if _, loaded := m.seen.LoadOrStore(k, struct{}{}); loaded {
		m.nseen.Add(-1)
	}
	return service, function
}

func (m *Metrics) called(service, function string, code transport.Code) {
	if m == nil {
		return
	}
	s, f := m.labels(service, function)
	m.clientCalls.WithLabelValues(s, f, string(code)).Inc()
}

func (m *Metrics) noResponders(service, function string) {
	if m == nil {
		return
	}
	s, f := m.labels(service, function)
	m.clientNoResp.WithLabelValues(s, f).Inc()
}

func (m *Metrics) timedOut(service, function string) {
	if m == nil {
		return
	}
	s, f := m.labels(service, function)
	m.clientTimeouts.WithLabelValues(s, f).Inc()
}

func (m *Metrics) retried(service, function string) {
	if m == nil {
		return
	}
	s, f := m.labels(service, function)
	m.clientRetries.WithLabelValues(s, f).Inc()
}

func (m *Metrics) served(service, function string, code transport.Code) {
	if m == nil {
		return
	}
	s, f := m.labels(service, function)
	m.serviceCalls.WithLabelValues(s, f, string(code)).Inc()
}

func (m *Metrics) panicked(service, function string) {
	if m == nil {
		return
	}
	s, f := m.labels(service, function)
	m.servicePanics.WithLabelValues(s, f).Inc()
}

func (m *Metrics) inFlight(service string, delta float64) {
	if m == nil {
		return
	}
	m.serviceInFlight.WithLabelValues(service).Add(delta)
}
