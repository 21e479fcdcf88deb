package mesh_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

func TestTraceAcrossNestedCalls(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	// The wrapper stands in for the tracing middleware's server span.
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, span := tp.Tracer("test").Start(r.Context(), "POST /fn/{service}/{function}", trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	}, mesh.WithTracerProvider(tp))
	e.service(t, "inner", map[string]mesh.Handler{"f": echo}, mesh.WithTracerProvider(tp))
	e.service(t, "outer", map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			return c.Client().Invoke(ctx, "inner", "f", c.Params())
		}),
	}, mesh.WithTracerProvider(tp))

	if res := e.post(t, "outer", "f", `"x"`); res.status != 200 {
		t.Fatalf("status %d %s", res.status, res.body)
	}
	eventually(t, "5 ended spans", func() bool { return len(rec.Ended()) >= 5 })
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	chain := []struct {
		name string
		kind trace.SpanKind
	}{
		{"POST /fn/{service}/{function}", trace.SpanKindServer},
		{"call outer.f", trace.SpanKindClient},
		{"serve outer.f", trace.SpanKindServer},
		{"call inner.f", trace.SpanKindClient},
		{"serve inner.f", trace.SpanKindServer},
	}
	var parent sdktrace.ReadOnlySpan
	for _, link := range chain {
		s, ok := byName[link.name]
		if !ok {
			t.Fatalf("no span %q among %v", link.name, keys(byName))
		}
		if s.SpanKind() != link.kind {
			t.Errorf("%s: kind %v; want %v", link.name, s.SpanKind(), link.kind)
		}
		if parent != nil {
			if s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
				t.Errorf("%s: trace %s; want %s", link.name, s.SpanContext().TraceID(), parent.SpanContext().TraceID())
			}
			if s.Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("%s: parent %s; want %s (%s)", link.name, s.Parent().SpanID(), parent.SpanContext().SpanID(), parent.Name())
			}
		}
		parent = s
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestTraceContextWithoutProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "svc", map[string]mesh.Handler{
		"trace": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			return []byte(`"` + trace.SpanContextFromContext(ctx).TraceID().String() + `"`), nil
		}),
	})
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "root")
	defer span.End()
	got, err := e.client.Invoke(ctx, "svc", "trace", nil)
	if want := `"` + span.SpanContext().TraceID().String() + `"`; err != nil || string(got) != want {
		t.Errorf("function saw trace %s, %v; want %s", got, err, want)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := mesh.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	e := newEnv(t, nil, mesh.WithMetrics(m))
	e.service(t, "svc", map[string]mesh.Handler{
		"ok": echo,
		"conflict": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) {
			return nil, transport.NewError(transport.CodeConflict, "no")
		}),
		"boom": mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { panic("x") }),
		"hang": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	}, mesh.WithMetrics(m))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := e.client.Invoke(ctx, "svc", "ok", nil); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = e.client.Invoke(ctx, "svc", "conflict", nil)
	_, _ = e.client.Invoke(ctx, "svc", "boom", nil)
	_, _ = e.client.Invoke(ctx, "ghost", "f", nil)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _ = e.client.Invoke(short, "svc", "hang", nil)
	cancel()

	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"funcmesh_client_calls_total", map[string]string{"service": "svc", "function": "ok", "code": "ok"}, 3},
		{"funcmesh_client_calls_total", map[string]string{"service": "svc", "function": "conflict", "code": "conflict"}, 1},
		{"funcmesh_client_calls_total", map[string]string{"service": "svc", "function": "boom", "code": "internal"}, 1},
		{"funcmesh_client_calls_total", map[string]string{"service": "ghost", "function": "f", "code": "unavailable"}, 1},
		{"funcmesh_client_calls_total", map[string]string{"service": "svc", "function": "hang", "code": "deadline_exceeded"}, 1},
		{"funcmesh_client_no_responders_total", map[string]string{"service": "ghost", "function": "f"}, 1},
		{"funcmesh_client_timeouts_total", map[string]string{"service": "svc", "function": "hang"}, 1},
		{"funcmesh_service_calls_total", map[string]string{"service": "svc", "function": "ok", "code": "ok"}, 3},
		{"funcmesh_service_calls_total", map[string]string{"service": "svc", "function": "conflict", "code": "conflict"}, 1},
		{"funcmesh_service_panics_total", map[string]string{"service": "svc", "function": "boom"}, 1},
	}
	// The service counts the hung call when its deadline ends it, which may
	// be after the client gave up.
	eventually(t, "the service to count the hung call", func() bool {
		return metricValue(t, reg, "funcmesh_service_calls_total", map[string]string{"service": "svc", "function": "hang", "code": "deadline_exceeded"}) == 1
	})
	for _, w := range want {
		if got := metricValue(t, reg, w.name, w.labels); got != w.value {
			t.Errorf("%s%v = %v; want %v", w.name, w.labels, got, w.value)
		}
	}
	// The hung call leaves the in-flight gauge when its goroutine ends,
	// just after it is counted.
	eventually(t, "no call in flight", func() bool {
		return metricValue(t, reg, "funcmesh_service_in_flight", map[string]string{"service": "svc"}) == 0
	})
}

// metricValue returns the value of the series name{labels}, -1 if absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return value(m)
		}
	}
	return -1
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.service(t, "alpha", map[string]mesh.Handler{"f": echo, "g": echo}, mesh.WithVersion("1.2.0"), mesh.WithDescription("first"))
	e.service(t, "alpha", map[string]mesh.Handler{"f": echo, "h": echo}, mesh.WithVersion("1.3.0"))
	e.service(t, "beta", map[string]mesh.Handler{"x": echo})
	e.service(t, "empty", nil) // no function yet: found by its metadata
	// Not ours: a micro service on another subject.
	other, err := micro.AddService(e.conn(t), micro.Config{Name: "other", Version: "1.0.0", Endpoint: &micro.EndpointConfig{Subject: "elsewhere", Handler: micro.HandlerFunc(func(micro.Request) {})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Stop() })

	d, err := mesh.NewDiscovery(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var list []mesh.ServiceInfo
	eventually(t, "all instances to answer", func() bool {
		list, err = d.Services(ctx)
		return err == nil && len(list) == 3 && len(list[0].Instances) == 2
	})
	if got := []string{list[0].Name, list[1].Name, list[2].Name}; !slices.Equal(got, []string{"alpha", "beta", "empty"}) {
		t.Fatalf("services %v", got)
	}
	if !slices.Equal(list[0].Functions, []string{"f", "g", "h"}) || !slices.Equal(list[1].Functions, []string{"x"}) || len(list[2].Functions) != 0 {
		t.Errorf("functions %v %v %v", list[0].Functions, list[1].Functions, list[2].Functions)
	}
	versions := []string{list[0].Instances[0].Version, list[0].Instances[1].Version}
	slices.Sort(versions)
	if !slices.Equal(versions, []string{"1.2.0", "1.3.0"}) {
		t.Errorf("versions %v", versions)
	}

	for svc, want := range map[string]bool{"alpha": true, "empty": true, "ghost": false, "other": false} {
		if got, err := d.Running(ctx, svc); err != nil || got != want {
			t.Errorf("Running(%s) = %v, %v; want %v", svc, got, err, want)
		}
	}

	srv := httptest.NewServer(d)
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var got struct{ Services []mesh.ServiceInfo }
	if err := json.Unmarshal(body, &got); err != nil || res.StatusCode != 200 || len(got.Services) != 3 {
		t.Errorf("GET: %d %s (%v)", res.StatusCode, body, err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	res, err = http.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 405 {
		t.Errorf("POST: %d; want 405", res.StatusCode)
	}
}

func TestMicroSeesService(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	svc := e.service(t, "payments", map[string]mesh.Handler{"charge": echo}, mesh.WithVersion("1.2.0"), mesh.WithMetadata(map[string]string{"team": "billing"}))
	if _, err := e.client.Invoke(context.Background(), "payments", "charge", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	m, err := e.nc.Request("$SRV.INFO.payments", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "payments" || info.ID != svc.ID() || info.Version != "1.2.0" || info.Metadata["team"] != "billing" ||
		len(info.Endpoints) != 1 || info.Endpoints[0].Subject != "fn.payments.charge" || info.Endpoints[0].QueueGroup != "q" {
		t.Errorf("INFO = %+v", info)
	}
	m, err = e.nc.Request("$SRV.STATS.payments", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(m.Data, &stats); err != nil || len(stats.Endpoints) != 1 {
		t.Fatalf("STATS = %s (%v)", m.Data, err)
	}
	var data mesh.EndpointStats
	if err := json.Unmarshal(stats.Endpoints[0].Data, &data); err != nil || data.Calls != 1 || data.InFlight != 0 {
		t.Errorf("STATS data = %s (%v)", stats.Endpoints[0].Data, err)
	}
}

func TestMetricsBoundLabels(t *testing.T) {
	t.Parallel()
	m := mesh.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	e := newEnv(t, nil, mesh.WithMetrics(m))
	for i := 0; i < mesh.MaxMetricFunctions+5; i++ {
		_, _ = e.client.Invoke(context.Background(), "s"+strconv.Itoa(i), "f", nil)
	}
	if got := metricValue(t, reg, "funcmesh_client_calls_total", map[string]string{"service": "_other", "function": "_other", "code": "unavailable"}); got != 5 {
		t.Errorf("calls past the bound = %v; want 5", got)
	}
	if got := metricValue(t, reg, "funcmesh_client_calls_total", map[string]string{"service": "s0", "function": "f", "code": "unavailable"}); got != 1 {
		t.Errorf("s0 = %v; want 1", got)
	}
}
