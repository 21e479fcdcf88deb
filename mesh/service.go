package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/funcmesh/funcmesh/transport"
)

// ErrServiceStopped is returned by [Service.Handle] after [Service.Stop].
var ErrServiceStopped = errors.New("mesh: service stopped")

// Service is one instance of a service: a NATS micro service named after
// the service, with one endpoint per function on the subject
// prefix.service.function in the queue group "q", so that several
// instances share the calls and $SRV.PING/INFO/STATS (and "nats micro ls")
// see every one.
//
// micro runs an endpoint's handler on the subscription's goroutine, one
// message after another, so the Service hands every call to a goroutine of
// its own: a slow function never holds up the others. At most
// [WithMaxConcurrency] calls run at once; a call above that is answered 429
// at once without running the function, and a [Client] tries it again.
//
// A Service is safe for concurrent use.
type Service struct {
	nc      *nats.Conn
	name    string
	cfg     serviceConfig
	ms      micro.Service
	id      string
	client  *Client
	tracer  trace.Tracer
	metrics *Metrics

	mu        sync.Mutex
	endpoints map[string]*endpoint
	stopping  bool

	active atomic.Int64 // calls admitted and not yet answered
	wg     sync.WaitGroup
	base   context.Context // parent of every function's context
	cancel context.CancelFunc

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// endpoint is one registered function.
type endpoint struct {
	name     string
	subject  string
	caller   string // the Mesh-Caller value of calls it makes: service.function
	spanName string
	handler  Handler

	calls, errors, rejected, panics atomic.Int64
	processing                      atomic.Int64 // nanoseconds
}

// NewService starts an instance of the service name on nc. It answers no
// call until functions are registered with [Service.Handle]. name must be a
// valid name (see [transport.ValidateName]).
func NewService(nc *nats.Conn, name string, opts ...ServiceOption) (*Service, error) {
	if nc == nil {
		return nil, errors.New("mesh: NewService: nil connection")
	}
	if err := transport.ValidateName(name); err != nil {
		return nil, fmt.Errorf("mesh: service name: %w", err)
	}
	cfg := serviceConfig{
		prefix:         transport.DefaultPrefix,
		callPrefix:     transport.DefaultCallPrefix,
		timeout:        DefaultTimeout,
		maxConcurrency: DefaultMaxConcurrency,
		version:        DefaultVersion,
	}
	apply(serviceSide(opts), &cfg, cfg.fail, func(o *option) func(*serviceConfig) { return o.service }, "Service")
	if cfg.err != nil {
		return nil, cfg.err
	}
	s := &Service{
		nc:        nc,
		name:      name,
		cfg:       cfg,
		metrics:   cfg.metrics,
		endpoints: make(map[string]*endpoint),
		stopped:   make(chan struct{}),
	}
	if cfg.tracer != nil {
		s.tracer = cfg.tracer.Tracer(instrumentationName)
	}
	if err := transport.ValidateCallPrefix(cfg.callPrefix, cfg.prefix); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	client, err := newClient(nc, clientConfig{
		prefix:      cfg.prefix,
		callPrefix:  cfg.callPrefix,
		router:      cfg.router,
		timeout:     cfg.timeout,
		maxAttempts: DefaultMaxAttempts,
		tracer:      cfg.tracer,
		metrics:     cfg.metrics,
	})
	if err != nil {
		return nil, err
	}
	s.client = client
	s.base, s.cancel = context.WithCancel(context.Background())
	md := maps.Clone(cfg.metadata)
	if md == nil {
		md = map[string]string{}
	}
	md[MetadataPrefix] = cfg.prefix
	ms, err := micro.AddService(nc, micro.Config{
		Name:         name,
		Version:      cfg.version,
		Description:  cfg.description,
		Metadata:     md,
		QueueGroup:   transport.QueueGroup,
		StatsHandler: s.endpointStats,
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			s.log(context.Background(), slog.LevelError, "mesh: subscription error", slog.String("service", name), slog.String("error", err.Error()))
		},
	})
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("mesh: service %s: %w", name, err)
	}
	s.ms = ms
	s.id = ms.Info().ID
	// The server refuses a subscription the connection's credentials do
	// not allow (another service's name, with per-service credentials)
	// without failing the SUB itself: after a round trip the refusal is
	// known, and a service that could never be reached is an error now
	// rather than a silent 503 later.
	_ = nc.FlushTimeout(handleFlushTimeout)
	if err := refused(nc, func(subj string) bool {
		// micro subscribes $SRV.<verb>.<name> and $SRV.<verb>.<name>.<id>.
		parts := strings.Split(subj, ".")
		return len(parts) >= 3 && parts[0] == "$SRV" && parts[2] == name
	}); err != nil {
		_ = ms.Stop()
		s.cancel()
		return nil, fmt.Errorf("mesh: service %s: %w", name, err)
	}
	return s, nil
}

// refused returns the connection's last error when it is the server's
// refusal of a subscription to a subject that match reports as ours. It is
// the one place that reads an error's text: nats.go reports the refused
// subject only there (TestServiceCredentialsRefusedAtRegistration covers it).
func refused(nc *nats.Conn, match func(subject string) bool) error {
	err := nc.LastError()
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	_, rest, ok := strings.Cut(err.Error(), `Subscription to "`)
	if !ok {
		return nil
	}
	subject, _, ok := strings.Cut(rest, `"`)
	if !ok || !match(subject) {
		return nil
	}
	return fmt.Errorf("the connection's credentials may not subscribe to %s: %w", subject, err)
}

// Name returns the service name.
func (s *Service) Name() string { return s.name }

// ID returns this instance's micro service ID, unique per instance.
func (s *Service) ID() string { return s.id }

// Client returns a client that shares the service's connection, prefix,
// tracer and metrics (see [Call.Client]).
func (s *Service) Client() *Client { return s.client }

// Handle registers h as the function name, on the subject
// prefix.service.name. When it returns (on a connected connection), the
// broker delivers calls to the function. It fails for an invalid or
// already registered name and after [Service.Stop].
func (s *Service) Handle(name string, h Handler) error {
	if h == nil {
		return fmt.Errorf("mesh: function %s.%s: nil handler", s.name, name)
	}
	subject, err := transport.Subject(s.cfg.prefix, s.name, name)
	if err != nil {
		return fmt.Errorf("mesh: function %s.%s: %w", s.name, name, err)
	}
	ep := &endpoint{
		name:     name,
		subject:  subject,
		caller:   s.name + "." + name,
		spanName: "serve " + s.name + "." + name,
		handler:  h,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return ErrServiceStopped
	}
	if _, dup := s.endpoints[name]; dup {
		return fmt.Errorf("mesh: function %s.%s: already registered", s.name, name)
	}
	err = s.ms.AddEndpoint(name,
		micro.HandlerFunc(func(r micro.Request) { s.dispatch(ep, r) }),
		micro.WithEndpointSubject(subject),
		micro.WithEndpointQueueGroup(transport.QueueGroup))
	if err != nil {
		return fmt.Errorf("mesh: function %s.%s: %w", s.name, name, err)
	}
	s.endpoints[name] = ep
	// Once the server has the subscription (a round trip), callers on
	// other connections reach the function. A connection that is not
	// connected now registers it when it reconnects.
	_ = s.nc.FlushTimeout(handleFlushTimeout)
	if err := refused(s.nc, func(subj string) bool { return subj == subject }); err != nil {
		delete(s.endpoints, name)
		return fmt.Errorf("mesh: function %s.%s: %w", s.name, name, err)
	}
	return nil
}

const handleFlushTimeout = 5 * time.Second

// HandleFunc registers f as the function name; see [Service.Handle].
func (s *Service) HandleFunc(name string, f func(ctx context.Context, c *Call) ([]byte, error)) error {
	if f == nil {
		return fmt.Errorf("mesh: function %s.%s: nil handler", s.name, name)
	}
	return s.Handle(name, HandlerFunc(f))
}

var (
	errBusy = transport.NewError(transport.CodeResourceExhausted, transport.DefaultMessage(transport.CodeResourceExhausted))
	errLate = transport.NewError(transport.CodeDeadlineExceeded, "deadline passed before the call started")
)

// dispatch runs on the endpoint's subscription goroutine: it admits the
// call or refuses it, and hands an admitted call to a goroutine.
func (s *Service) dispatch(ep *endpoint, r micro.Request) {
	reply := r.Reply()
	if s.active.Add(1) > int64(s.cfg.maxConcurrency) {
		s.active.Add(-1)
		ep.rejected.Add(1)
		s.metrics.served(s.name, ep.name, transport.CodeResourceExhausted)
		s.replyError(reply, errBusy)
		return
	}
	c := &Call{svc: s, ep: ep, params: r.Data(), header: nats.Header(r.Headers()), reply: reply}
	now := time.Now()
	err := c.parseHeaders(c.header, now, s.cfg.timeout)
	if err == nil && !c.deadline.After(now) {
		err = errLate
	}
	if err != nil {
		s.active.Add(-1)
		ep.errors.Add(1)
		e := transport.AsError(err)
		s.metrics.served(s.name, ep.name, e.Code())
		s.replyError(reply, e)
		return
	}
	s.wg.Add(1)
	s.metrics.inFlight(s.name, 1)
	go s.serve(c)
}

// serve runs one admitted call and answers it.
func (s *Service) serve(c *Call) {
	ep := c.ep
	defer s.wg.Done()
	defer s.active.Add(-1)
	defer s.metrics.inFlight(s.name, -1)
	ep.calls.Add(1)
	start := time.Now()
	defer func() { ep.processing.Add(int64(time.Since(start))) }()

	c.ctx.init(c, s.base)
	defer c.ctx.end()
	var ctx context.Context = &c.ctx
	var span trace.Span
	if _, ok := c.header[transport.HeaderTraceparent]; ok || s.tracer != nil {
		ctx, span = s.startSpan(ctx, c)
	}

	out, err := s.run(ctx, ep, c)
	if err != nil {
		s.failed(ctx, c, span, err)
		return
	}
	if span != nil {
		span.End()
	}
	s.metrics.served(s.name, ep.name, codeOK)
	if c.reply != "" {
		s.reply(ctx, c, out)
	}
}

// startSpan continues the caller's trace in ctx and, with a tracer,
// starts the call's server span.
func (s *Service) startSpan(ctx context.Context, c *Call) (context.Context, trace.Span) {
	if _, ok := c.header[transport.HeaderTraceparent]; ok {
		ctx = traceContext.Extract(ctx, headerCarrier(c.header))
	}
	if s.tracer == nil {
		return ctx, nil
	}
	return s.tracer.Start(ctx, c.ep.spanName,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("rpc.system", "funcmesh"),
			attribute.String("rpc.service", s.name),
			attribute.String("rpc.method", c.ep.name),
			attribute.String("funcmesh.request_id", c.requestID),
		))
}

// failed answers a call whose function returned err.
func (s *Service) failed(ctx context.Context, c *Call, span trace.Span, err error) {
	ep := c.ep
	ep.errors.Add(1)
	e := transport.AsError(err)
	if e.HTTPStatus() >= 500 && !(ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		// Server errors are reported, except the function giving up
		// at its deadline or at a hard stop: that is no failure of its.
		s.report(ctx, c, err)
	}
	if span != nil {
		span.SetStatus(codes.Error, e.Message())
		span.SetAttributes(attribute.String("funcmesh.code", string(e.Code())), attribute.Int("http.response.status_code", e.HTTPStatus()))
		span.End()
	}
	s.metrics.served(s.name, ep.name, e.Code())
	s.replyError(c.reply, e)
}

// reply sends a function's result.
func (s *Service) reply(ctx context.Context, c *Call, out []byte) {
	msg := nats.Msg{Subject: c.reply, Data: out}
	if ct := c.replyContentType; ct != "" && ct != jsonContentType {
		msg.Header = nats.Header{transport.HeaderContentType: {ct}}
	}
	if err := s.nc.PublishMsg(&msg); err != nil {
		s.replyFailed(ctx, c, len(out), err)
	}
}

// replyFailed handles a result that could not be sent.
func (s *Service) replyFailed(ctx context.Context, c *Call, size int, err error) {
	if errors.Is(err, nats.ErrMaxPayload) {
		cause := fmt.Errorf("mesh: result of %s.%s is %d bytes, over the broker's max payload of %d: %w", s.name, c.ep.name, size, s.nc.MaxPayload(), err)
		s.report(ctx, c, cause)
		s.replyError(c.reply, transport.NewError(transport.CodeInternal, "result too large"))
		return
	}
	s.log(ctx, slog.LevelWarn, "mesh: sending reply", slog.String("service", s.name), slog.String("function", c.ep.name), slog.String("request_id", c.requestID), slog.String("error", err.Error()))
}

// run calls the function and turns a panic into a *PanicError.
func (s *Service) run(ctx context.Context, ep *endpoint, c *Call) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			ep.panics.Add(1)
			s.metrics.panicked(s.name, ep.name)
			out, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return ep.handler.ServeCall(ctx, c)
}

// report hands a server error's internals to the logger and the hook.
func (s *Service) report(ctx context.Context, c *Call, err error) {
	if s.cfg.logger != nil {
		attrs := []slog.Attr{
			slog.String("service", s.name),
			slog.String("function", c.ep.name),
			slog.String("request_id", c.requestID),
			slog.String("error", err.Error()),
		}
		msg := "mesh: function failed"
		if p, ok := errors.AsType[*PanicError](err); ok {
			msg = "mesh: function panicked"
			attrs = append(attrs, slog.String("stack", string(p.Stack)))
		} else if e, ok := errors.AsType[*transport.Error](err); ok && e.Unwrap() != nil {
			attrs = append(attrs, slog.String("cause", e.Unwrap().Error()))
		}
		s.cfg.logger.LogAttrs(ctx, slog.LevelError, msg, attrs...)
	}
	if s.cfg.onError != nil {
		s.cfg.onError(ctx, c, err)
	}
}

func (s *Service) log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	if s.cfg.logger != nil {
		s.cfg.logger.LogAttrs(ctx, level, msg, attrs...)
	}
}

// replyError answers a call with the error headers of e.
func (s *Service) replyError(reply string, e *transport.Error) {
	if reply == "" {
		return
	}
	h := make(nats.Header, 2)
	e.SetHeaders(h)
	if err := s.nc.PublishMsg(&nats.Msg{Subject: reply, Header: h}); err != nil {
		s.log(context.Background(), slog.LevelWarn, "mesh: sending error reply", slog.String("service", s.name), slog.String("error", err.Error()))
	}
}

// endpointStats is micro's StatsHandler: the Data of each endpoint in
// $SRV.STATS replies. micro's own counters see only the hand-off to the
// call's goroutine, so these are the ones to read.
func (s *Service) endpointStats(e *micro.Endpoint) any {
	s.mu.Lock()
	ep := s.endpoints[e.Name]
	s.mu.Unlock()
	if ep == nil {
		return nil
	}
	return EndpointStats{
		Calls:    ep.calls.Load(),
		Errors:   ep.errors.Load(),
		Rejected: ep.rejected.Load(),
		Panics:   ep.panics.Load(),
		InFlight: s.active.Load(),

		ProcessingTime: time.Duration(ep.processing.Load()),
	}
}

// EndpointStats is the "data" of each endpoint in a service instance's
// $SRV.STATS reply.
type EndpointStats struct {
	Calls    int64 `json:"calls"`     // calls the function ran for
	Errors   int64 `json:"errors"`    // calls answered with an error, refusals aside
	Rejected int64 `json:"rejected"`  // calls refused with 429 at the concurrency limit
	Panics   int64 `json:"panics"`    // calls whose function panicked
	InFlight int64 `json:"in_flight"` // calls the instance is running now, all functions

	// ProcessingTime is the time the function's calls took, from the
	// start of the function to its reply, summed over Calls (JSON:
	// nanoseconds, as micro's own processing_time).
	ProcessingTime time.Duration `json:"processing_time"`
}

// Stop stops the instance gracefully: it stops taking calls (the endpoint
// subscriptions are drained, so NATS sends new calls to other instances
// and every call already delivered to this one still runs), waits for the
// calls in flight, then leaves. If ctx ends first, Stop cancels the
// contexts of the functions still running and returns ctx's error; their
// replies are still sent if they finish. Stop may be called more than
// once; every call waits for the same stop.
//
// To know that every delivered call has been taken in, Stop waits for
// each subscription of the connection to process what it had queued (a
// nats.Conn barrier): a callback of another subscription on the same
// connection that blocks delays Stop, at most until ctx ends.
func (s *Service) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		go s.stop()
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		s.cancel()
		return fmt.Errorf("mesh: stopping service %s: %w", s.name, ctx.Err())
	}
}

func (s *Service) stop() {
	defer close(s.stopped)
	defer s.cancel()
	err := s.ms.Stop()
	if err != nil {
		s.stopErr = fmt.Errorf("mesh: stopping service %s: %w", s.name, err)
	}
	if !s.nc.IsClosed() {
		// Once the server has our UNSUBs (the flush's round trip), every
		// call it delivered to this instance sits in a subscription's
		// pending queue; the barrier runs after each queue up to here has
		// been handed to dispatch, so no wg.Add can follow wg.Wait.
		_ = s.nc.Flush()
		done := make(chan struct{})
		if s.nc.Barrier(func() { close(done) }) == nil {
			<-done
		}
	}
	s.wg.Wait()
	// No function runs any more to wait for a nested call's answer.
	s.client.closeInboxes()
}
