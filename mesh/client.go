package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

const jsonContentType = "application/json"

// Client calls functions over NATS, from a host application or from inside
// a function. A Client is safe for concurrent use and cheap to share: make
// one per connection, or one over several with [WithConns] when many
// calls are made at once.
//
// Each call carries, in the headers of the wire contract (see package
// transport): the deadline (the context's, or [WithTimeout]'s), the request
// ID, the caller's verified claims, the calling function and the W3C trace
// context. Inside a function, a call made with the function's context
// passes on the claims, their signature and the request ID of the call
// being served and names that function as the caller; elsewhere they come
// from the context through [reqctx.RequestID], [reqctx.ClaimsJSON] and
// [reqctx.Caller] (authz.policy for the policy's calls), and a request ID
// is generated when there is none. A call in a context marked by
// [reqctx.WithPolicyCall] (authz marks the calls its policy makes) is
// signed with the mark ([transport.ClaimsSigner.SignPolicyCall]), claims
// or not, so that the nested calls the function makes carry it; without
// [WithClaimsSigner] such a call fails with 500.
//
// A call made with a function's context is a nested call: it goes out on
// the call route to the host's [Router], which asks the policy before the
// callee runs (or passes the Router given with [WithLocalRouter] in the
// process); with no router running it fails at once with 503. Other calls
// go straight to the function, their claims signed with
// [WithClaimsSigner] when given.
//
// Errors are [*transport.Error]s: no instance running is
// transport.CodeUnavailable (503) at once, not after the timeout (its cause
// is nats.ErrNoResponders); the deadline passing is
// transport.CodeDeadlineExceeded (504); a connection that is not connected
// (closed, reconnecting, draining) is 503 at once, never buffered to be
// sent later; a function's error keeps its code and message; a call that
// instances refuse with 429 is sent again (see [WithMaxAttempts]).
type Client struct {
	nc          *nats.Conn
	conns       []*nats.Conn // nc, then WithConns's
	prefix      string
	timeout     time.Duration
	maxAttempts int
	tracer      trace.Tracer
	metrics     *Metrics
	callPrefix  string
	signer      *transport.ClaimsSigner
	router      *Router      // WithLocalRouter
	logger      *slog.Logger // for the Gateway over this Client

	inboxMu sync.Mutex
	inboxes sync.Map // inboxKey → *inbox

	payload atomic.Int64 // nc's max payload, as read last
}

// NewClient returns a client that calls functions over nc.
func NewClient(nc *nats.Conn, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{
		prefix:      transport.DefaultPrefix,
		callPrefix:  transport.DefaultCallPrefix,
		timeout:     DefaultTimeout,
		maxAttempts: DefaultMaxAttempts,
	}
	apply(clientSide(opts), &cfg, cfg.fail, func(o *option) func(*clientConfig) { return o.client }, "Client")
	if cfg.err == nil {
		if err := transport.ValidateCallPrefix(cfg.callPrefix, cfg.prefix); err != nil {
			cfg.fail(fmt.Errorf("mesh: %w", err))
		}
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	return newClient(nc, cfg)
}

func newClient(nc *nats.Conn, cfg clientConfig) (*Client, error) {
	if nc == nil {
		return nil, errors.New("mesh: NewClient: nil connection")
	}
	conns := append([]*nats.Conn{nc}, cfg.conns...)
	for _, extra := range cfg.conns {
		if extra == nil {
			return nil, errors.New("mesh: WithConns: nil connection")
		}
	}
	c := &Client{
		nc:          nc,
		conns:       conns,
		prefix:      cfg.prefix,
		timeout:     cfg.timeout,
		maxAttempts: cfg.maxAttempts,
		metrics:     cfg.metrics,
		callPrefix:  cfg.callPrefix,
		signer:      cfg.signer,
		router:      cfg.router,
		logger:      cfg.logger,
	}
	if cfg.tracer != nil {
		c.tracer = cfg.tracer.Tracer(instrumentationName)
	}
	return c, nil
}

// Conn returns the client's connection: the one given to [NewClient].
func (c *Client) Conn() *nats.Conn { return c.nc }

// maxPayload returns nc's max payload as read last, and reads it again
// when fresh: reading it takes the lock every publish on nc takes (0.7 µs
// of CPU a BenchmarkCall/mesh call; docs/performance.md, "Three back for
// issue 17").
func (c *Client) maxPayload(fresh bool) int64 {
	if n := c.payload.Load(); n > 0 && !fresh {
		return n
	}
	n := c.nc.MaxPayload()
	c.payload.Store(n)
	return n
}

// closeInboxes ends the subscriptions of the client's nested-call inboxes.
func (c *Client) closeInboxes() {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	c.inboxes.Range(func(key, ib any) bool {
		_ = ib.(*inbox).sub.Unsubscribe()
		c.inboxes.Delete(key)
		return true
	})
}

// conn returns the connection for one call: with [WithConns], one picked
// at random, the next connected one if it is not.
func (c *Client) conn() *nats.Conn {
	n := len(c.conns)
	if n == 1 {
		return c.nc
	}
	start := rand.IntN(n)
	for i := range n {
		if nc := c.conns[(start+i)%n]; nc.Status() == nats.CONNECTED {
			return nc
		}
	}
	return c.conns[start]
}

// Request is one call for [Client.Do].
type Request struct {
	Service  string
	Function string
	// Params is sent unchanged; JSON by convention.
	Params []byte
	// ContentType is the media type of Params, sent in the Content-Type
	// header; empty sends none.
	ContentType string
	// Header holds more headers to send, such as transport.HeaderTaskID.
	// The headers the client sets itself (deadline, claims, request ID,
	// caller, trace context, content type) replace any of the same name.
	Header nats.Header
}

// Reply is a successful call's result.
type Reply struct {
	// Body is the function's result, unchanged.
	Body []byte
	// ContentType is the result's media type: application/json unless the
	// function set another.
	ContentType string
}

// Invoke calls service.function with params (JSON: for another media type
// use [Client.Do] with Request.ContentType) and returns the result; see
// [Client] for what travels with the call and the errors.
func (c *Client) Invoke(ctx context.Context, service, function string, params []byte) ([]byte, error) {
	rep, err := c.Do(ctx, &Request{Service: service, Function: function, Params: params})
	return rep.Body, err
}

// InvokeJSON calls service.function with in encoded as JSON and decodes the
// result into an Out. A result that is not valid JSON for Out is a
// transport.CodeBadReply (502) error.
func InvokeJSON[Out any](ctx context.Context, c *Client, service, function string, in any) (Out, error) {
	var out Out
	params, err := json.Marshal(in)
	if err != nil {
		return out, transport.WrapError(transport.CodeInvalidArgument, "params cannot be encoded as JSON", err)
	}
	body, err := c.Invoke(ctx, service, function, params)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, transport.WrapError(transport.CodeBadReply, "result of "+service+"."+function+" is not the expected JSON", err)
	}
	return out, nil
}

// Do makes the call req describes and returns the reply with its content
// type; it is [Client.Invoke] for callers that need the content type or
// build the request themselves, like the gateway.
func (c *Client) Do(ctx context.Context, req *Request) (Reply, error) {
	if err := transport.ValidateName(req.Service); err != nil {
		return Reply{}, transport.WrapError(transport.CodeInvalidArgument, "invalid service name: "+nameProblem(err), err)
	}
	if err := transport.ValidateName(req.Function); err != nil {
		return Reply{}, transport.WrapError(transport.CodeInvalidArgument, "invalid function name: "+nameProblem(err), err)
	}
	if len(req.ContentType) > maxContentTypeLen {
		return Reply{}, transport.NewError(transport.CodeInvalidArgument, "Content-Type too long")
	}
	rep, code, err := c.do(ctx, req)
	c.metrics.called(req.Service, req.Function, code)
	if code == transport.CodeDeadlineExceeded {
		// Also when the service gave up first: its deadline is the same
		// instant, rounded down to the millisecond.
		c.metrics.timedOut(req.Service, req.Function)
	}
	return rep, err
}

func (c *Client) do(ctx context.Context, req *Request) (Reply, transport.Code, error) {
	nc := c.conn()
	if st := nc.Status(); st != nats.CONNECTED {
		e := transport.WrapError(transport.CodeUnavailable, "not connected to the broker", fmt.Errorf("mesh: connection %s: %w", st, errNotConnected))
		return Reply{}, e.Code(), e
	}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		deadline = time.Now().Add(c.timeout)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		e := c.requestError(req, err)
		return Reply{}, e.Code(), e
	}

	h := callHeader{h: make(nats.Header, len(req.Header)+8), vals: make([]string, 0, 8)}
	for k, v := range req.Header {
		h.h[k] = v
	}
	msg := &nats.Msg{Header: h.h, Data: req.Params}
	call, inCall := CallFromContext(ctx)
	if inCall {
		h.set(transport.HeaderDeadline, transport.FormatDeadline(call.deadline))
	} else {
		h.set(transport.HeaderDeadline, transport.FormatDeadline(deadline))
	}
	requestID := ""
	if inCall {
		// A nested call goes through the call route and a router, which
		// verifies the claims against their signature, the request ID and
		// the deadline they were signed for: the parent's, passed on as
		// received. A shorter deadline of this call travels as a timeout.
		requestID = call.requestID
		if call.rawClaims != "" {
			h.set(transport.HeaderAuth, call.rawClaims)
		}
		if call.rawSig != "" {
			// Also without claims: the signature of a call the policy
			// made marks the calls made within it.
			h.set(transport.HeaderAuthSig, call.rawSig)
		}
		if deadline.Before(call.deadline) {
			h.set(transport.HeaderTimeoutMs, transport.FormatTimeout(time.Until(deadline)))
		}
		h.set(transport.HeaderCaller, call.ep.caller)
		if call.hops > 0 {
			h.set(transport.HeaderHops, strconv.Itoa(call.hops))
		}
	} else {
		if raw, ok := reqctx.ClaimsJSON(ctx); ok && len(raw) > 0 {
			h.set(transport.HeaderAuth, string(raw))
		}
		if caller, ok := reqctx.Caller(ctx); ok {
			// The host's own call on behalf of a caller it names: the
			// policy's (authz.policy), say.
			h.set(transport.HeaderCaller, caller.String())
		}
	}
	if requestID == "" {
		if id, ok := reqctx.RequestID(ctx); ok {
			requestID = id
		} else {
			// None in the context: every call carries one.
			requestID = nuid.Next()
		}
	}
	h.set(transport.HeaderRequestID, requestID)
	if !inCall {
		// The host signs the claims it sends, bound to this call, so that
		// the function can pass them on to a nested call; a call the
		// policy makes is signed with its mark, claims or not, so that
		// the nested calls made within it carry the mark.
		claims := ""
		if v := h.h[transport.HeaderAuth]; len(v) > 0 {
			claims = v[0]
		}
		switch {
		case reqctx.PolicyCall(ctx) && c.signer == nil:
			e := transport.NewError(transport.CodeInternal, "a call for the policy needs the host's claims signer (mesh.WithClaimsSigner): its mark travels in the signature")
			return Reply{}, e.Code(), e
		case reqctx.PolicyCall(ctx):
			h.set(transport.HeaderAuthSig, c.signer.SignPolicyCall(claims, requestID, deadline))
		case c.signer != nil && claims != "":
			h.set(transport.HeaderAuthSig, c.signer.Sign(claims, requestID, deadline))
		}
	}
	if req.ContentType != "" {
		h.set(transport.HeaderContentType, req.ContentType)
	}

	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.tracer.Start(ctx, "call "+req.Service+"."+req.Function,
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("rpc.system", "funcmesh"),
				attribute.String("rpc.service", req.Service),
				attribute.String("rpc.method", req.Function),
				attribute.String("funcmesh.request_id", requestID),
			))
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		traceContext.Inject(ctx, headerCarrier(h.h))
	}

	var ib *inbox
	if inCall {
		msg.Subject = c.callPrefix + "." + call.svc.name + "." + req.Service + "." + req.Function
		var err error
		if c.router != nil {
			// The router's checks in the process, then straight to the
			// function.
			fwd, _, err := c.router.check(msg, call.svc.name, req.Service, req.Function)
			if err != nil {
				e := transport.AsError(err)
				return Reply{}, e.Code(), e
			}
			msg = fwd
		} else if ib, err = c.inbox(nc, call.svc.name); err != nil {
			e := transport.WrapError(transport.CodeUnavailable, "cannot receive answers to nested calls", err)
			return Reply{}, e.Code(), e
		}
	} else {
		msg.Subject = c.prefix + "." + req.Service + "." + req.Function
	}
	rep, err := c.send(ctx, nc, ib, deadline, req, msg)
	code := codeOK
	if err != nil {
		code = err.Code()
	}
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, err.Message())
			span.SetAttributes(attribute.String("funcmesh.code", string(code)), attribute.Int("http.response.status_code", err.HTTPStatus()))
		}
		span.End()
	}
	if err != nil {
		return Reply{}, code, err
	}
	return rep, code, nil
}

// send sends msg until an instance takes it or the attempts run out: a
// refusal at capacity (429) and "no responders" are sent again. It waits
// on ctx.
func (c *Client) send(ctx context.Context, nc *nats.Conn, ib *inbox, deadline time.Time, req *Request, msg *nats.Msg) (Reply, *transport.Error) {
	for attempt := 1; ; attempt++ {
		var m *nats.Msg
		var err error
		if ib != nil {
			m, err = ib.request(ctx, msg)
			if errors.Is(err, nats.ErrNoResponders) {
				err = fmt.Errorf("%w: %w", errNoRouter, err)
			}
		} else {
			m, err = nc.RequestMsgWithContext(ctx, msg)
		}
		if err != nil {
			if errors.Is(err, nats.ErrNoResponders) && attempt < c.maxAttempts && ctx.Err() == nil && time.Now().Before(deadline) {
				// Nobody got the call, so sending it again is safe. A
				// cluster node that is stopping can make the broker
				// answer "no responders" for a moment while other
				// instances run (it picked a route that had just closed).
				continue
			}
			return Reply{}, c.requestError(req, err)
		}
		if e := transport.ErrorFromHeaders(m.Header); e != nil {
			if e.Code() == transport.CodeResourceExhausted && attempt < c.maxAttempts && ctx.Err() == nil && time.Now().Before(deadline) {
				c.metrics.retried(req.Service, req.Function)
				continue
			}
			return Reply{}, e
		}
		ct := headerValue(m.Header, transport.HeaderContentType)
		if ct == "" {
			ct = jsonContentType
		}
		return Reply{Body: m.Data, ContentType: ct}, nil
	}
}

// callHeader builds a call's headers, its values sharing one array: one
// allocation where nats.Header.Set makes one a header (1.2 → 0.5 µs of
// CPU and 5 allocations fewer a BenchmarkCall/mesh call;
// docs/performance.md, "Three back for issue 17").
type callHeader struct {
	h    nats.Header
	vals []string
}

// set sets the header k to the one value v.
func (ch *callHeader) set(k, v string) {
	ch.vals = append(ch.vals, v)
	n := len(ch.vals)
	ch.h[k] = ch.vals[n-1 : n : n]
}

// errNotConnected is the cause of the 503 for a call made while the
// connection is not connected.
var errNotConnected = errors.New("not connected")

// requestError maps an error of nats.go's request API to the mesh's.
func (c *Client) requestError(req *Request, err error) *transport.Error {
	switch {
	case errors.Is(err, errNoRouter):
		return transport.WrapError(transport.CodeUnavailable, "no router takes nested calls: the host runs none (mesh.NewRouter)", err)
	case errors.Is(err, nats.ErrNoResponders):
		c.metrics.noResponders(req.Service, req.Function)
		return transport.WrapError(transport.CodeUnavailable, "no instance of "+req.Service+" serves "+req.Function, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return transport.WrapError(transport.CodeDeadlineExceeded, transport.DefaultMessage(transport.CodeDeadlineExceeded), err)
	case errors.Is(err, context.Canceled):
		return transport.WrapError(transport.CodeCanceled, transport.DefaultMessage(transport.CodeCanceled), err)
	case errors.Is(err, nats.ErrMaxPayload):
		return transport.WrapError(transport.CodeTooLarge, "params too large for the broker", err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrInvalidConnection):
		return transport.WrapError(transport.CodeUnavailable, "not connected to the broker", err)
	}
	return transport.WrapError(transport.CodeInternal, transport.DefaultMessage(transport.CodeInternal), err)
}

// nameProblem is what is wrong with a name, as ValidateName said.
func nameProblem(err error) string {
	if ne, ok := errors.AsType[*transport.NameError](err); ok {
		return ne.Reason
	}
	return "invalid"
}
