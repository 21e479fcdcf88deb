package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// DefaultMaxHops is how many nested calls deep a chain may go before a
// Router refuses the next one with 508 (transport.CodeLoopDetected): a call
// from the gateway is hop 0, the call its function makes hop 1, and so on.
const DefaultMaxHops = 8

// AuthorizeFunc decides whether a nested call may be made. ctx carries the
// caller's verified claims ([reqctx.Claims], absent for an anonymous
// caller), the calling function ([reqctx.Caller]: the service proven by the
// broker, the function as that service reported it) and the request ID
// ([reqctx.RequestID]); params are the call's params as sent. It returns
// nil to allow the call and an error to refuse it: a *transport.Error
// answers with its status and message (403 for a denial), any other error
// with 500. authz.Authorizer's AuthorizeCall method is one.
type AuthorizeFunc func(ctx context.Context, service, function string, params []byte) error

type routerConfig struct {
	prefix     string
	callPrefix string
	signer     *transport.ClaimsSigner
	timeout    time.Duration
	maxHops    int
	workers    int
	logger     *slog.Logger
	err        error
}

// WithMaxHops sets how many nested calls deep a chain may go before a
// Router refuses the next one with 508; the default is [DefaultMaxHops].
// n must be from 1 to 255.
func WithMaxHops(n int) ClientOption {
	return &option{name: "WithMaxHops", err: errorIf(n < 1 || n > transport.MaxHopsValue, fmt.Errorf("mesh: max hops %d: want 1 to %d", n, transport.MaxHopsValue)),
		router: func(c *routerConfig) { c.maxHops = n }}
}

// WithRouterWorkers sets how many subscriptions a Router takes calls on,
// each with its goroutine that checks and forwards one call at a time. The
// default is GOMAXPROCS.
func WithRouterWorkers(n int) ClientOption {
	return &option{name: "WithRouterWorkers", err: errorIf(n < 1, fmt.Errorf("mesh: router workers %d: must be at least 1", n)),
		router: func(c *routerConfig) { c.workers = n }}
}

// Router makes nested calls pass the policy. A function of service A calls
// B.f by publishing a request on the call route,
//
//	<callprefix>.A.B.f
//
// (see [transport.CallSubject]), with its reply subject under A's own inbox
// (_INBOX_A.>, [transport.InboxPrefix]). With per-service credentials
// (broker.ServiceAuth) a service may publish on the call route only under
// its own name, so the subject proves which service calls. A Router,
// running in a host process on a host connection, takes such calls in the
// queue group "q" (every host replica and cluster node may run one; one
// of them gets each call) and for each:
//
//  1. refuses, without answering, a call whose reply subject does not lie
//     under the calling service's inbox: it never publishes anywhere else;
//  2. checks the forwarded claims: Mesh-Auth must come with the host's
//     signature (Mesh-Auth-Sig, see [WithClaimsSigner]) of exactly those
//     claims, the request ID (Mesh-Request-Id) and the deadline they were
//     signed for (Mesh-Deadline). A missing, altered or foreign signature
//     is refused with 401, one whose deadline has passed with 504: forged
//     claims never reach the policy or a function. A call without
//     Mesh-Auth is anonymous; if it has a Mesh-Auth-Sig all the same
//     (the mark of a policy call, below), that must hold too;
//  3. bounds the deadline: the signed one (for an anonymous call the one it
//     states, at most [WithTimeout] from now), shortened by an optional
//     Mesh-Timeout-Ms; refuses the call with 508 when Mesh-Hops (what the
//     calling function received) reaches the hop limit ([WithMaxHops]);
//  4. asks the policy (the [AuthorizeFunc]) with the claims, the caller
//     (the service from the subject, the function from Mesh-Caller, which
//     must name the same service, and never transport.PolicyCaller,
//     authz.policy: 403) and the request ID in the context, and, when the
//     signature is that of a call the policy made
//     ([transport.ClaimsSigner.SignPolicyCall]), the mark
//     [reqctx.WithPolicyCall], under which the policy makes no call of its
//     own; a refusal is answered with the policy's status and the callee
//     never sees the call;
//  5. forwards the call to <prefix>.B.f with its own connection: the same
//     params, content type, request ID, claims and trace context, the
//     claims (and the mark) signed again for the new deadline, Mesh-Caller
//     and Mesh-Hops one higher (at most 100,000 calls waiting at once: 429 above);
//  6. relays the answer (result or error) to the caller's reply subject,
//     without a reply subject of its own. No instance of B: 503.
//
// The answer travels through the Router rather than straight from B to the
// caller because nats-server lets a client publish once to the reply
// subject of every message delivered to it: if B answered into A's inbox
// itself, B could give that answer a reply subject of its choosing and so
// let A publish there (to $JS.API or $SYS, say). Relayed, every message a
// service receives has a reply subject chosen by the host.
//
// A service in the host process may pass its nested calls to the Router in
// the process instead ([WithLocalRouter]): the same checks, then straight
// to the function.
//
// A Router is safe for concurrent use. Stop it with [Router.Stop].
type Router struct {
	nc        *nats.Conn
	cfg       routerConfig
	authorize AuthorizeFunc

	subs        []*nats.Subscription
	replySub    *nats.Subscription
	replyPrefix string

	mu       sync.Mutex
	pending  map[string]pendingCall
	draining bool          // Stop is waiting for pending to empty
	idle     chan struct{} // closed once draining and pending is empty

	refused atomic.Int64

	stopOnce  sync.Once
	stopped   chan struct{}
	sweepOnce sync.Once
	sweeper   chan struct{}
}

// pendingCall is a forwarded call whose answer the Router relays.
type pendingCall struct {
	reply             string
	service, function string
	deadline          time.Time
}

// NewRouter starts a router of nested calls on nc, a host connection (one
// that may publish to every function), that asks authorize about every
// call. [WithClaimsSigner] is required: the host's signer, the one the
// gateway's Client signs with.
func NewRouter(nc *nats.Conn, authorize AuthorizeFunc, opts ...ClientOption) (*Router, error) {
	if nc == nil {
		return nil, errors.New("mesh: NewRouter: nil connection")
	}
	if authorize == nil {
		return nil, errors.New("mesh: NewRouter: nil AuthorizeFunc: every nested call passes the policy")
	}
	cfg := routerConfig{
		prefix:     transport.DefaultPrefix,
		callPrefix: transport.DefaultCallPrefix,
		timeout:    DefaultTimeout,
		maxHops:    DefaultMaxHops,
		workers:    runtime.GOMAXPROCS(0),
	}
	apply(clientSide(opts), &cfg, cfg.fail, func(o *option) func(*routerConfig) { return o.router }, "Router")
	if cfg.err != nil {
		return nil, cfg.err
	}
	if cfg.signer == nil {
		return nil, errors.New("mesh: NewRouter: no claims signer (WithClaimsSigner): the router verifies forwarded claims with it")
	}
	if err := transport.ValidateCallPrefix(cfg.callPrefix, cfg.prefix); err != nil {
		return nil, fmt.Errorf("mesh: NewRouter: %w", err)
	}
	r := &Router{
		nc:          nc,
		cfg:         cfg,
		authorize:   authorize,
		pending:     map[string]pendingCall{},
		replyPrefix: nc.NewInbox() + ".",
		stopped:     make(chan struct{}),
		sweeper:     make(chan struct{}),
		idle:        make(chan struct{}),
	}
	var err error
	if r.replySub, err = nc.Subscribe(r.replyPrefix+"*", r.relay); err != nil {
		return nil, fmt.Errorf("mesh: NewRouter: %w", err)
	}
	subject := cfg.callPrefix + ".*.*.*"
	for range cfg.workers {
		sub, err := nc.QueueSubscribe(subject, transport.QueueGroup, r.route)
		if err != nil {
			r.unsubscribe()
			return nil, fmt.Errorf("mesh: NewRouter: %w", err)
		}
		r.subs = append(r.subs, sub)
	}
	// Once the server has the subscriptions, nested calls reach us.
	if err := nc.FlushTimeout(handleFlushTimeout); err != nil && nc.IsConnected() {
		r.unsubscribe()
		return nil, fmt.Errorf("mesh: NewRouter: %w", err)
	}
	go r.sweep()
	return r, nil
}

func (r *Router) unsubscribe() {
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	if r.replySub != nil {
		_ = r.replySub.Unsubscribe()
	}
}

// Refused returns how many nested calls the Router dropped without an
// answer because their reply subject was not the calling service's inbox.
func (r *Router) Refused() int64 { return r.refused.Load() }

// Stop stops taking nested calls (other routers take them, or callers get
// 503 at once when none runs) and waits until the answers to the calls it
// forwarded are relayed or their deadlines pass, or until ctx ends.
func (r *Router) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() {
		go func() {
			defer close(r.stopped)
			for _, s := range r.subs {
				closed := s.StatusChanged(nats.SubscriptionClosed)
				if s.Drain() == nil {
					<-closed // every call it had taken in has been routed
				}
			}
			r.mu.Lock()
			r.draining = true
			r.checkIdle()
			r.mu.Unlock()
			<-r.idle
		}()
	})
	var err error
	select {
	case <-r.stopped:
	case <-ctx.Done():
		err = fmt.Errorf("mesh: stopping router: %w", ctx.Err())
	}
	r.unsubscribe()
	r.sweepOnce.Do(func() { close(r.sweeper) })
	return err
}

// checkIdle closes idle once Stop waits and no answer is pending. r.mu
// is held.
func (r *Router) checkIdle() {
	if r.draining && len(r.pending) == 0 {
		select {
		case <-r.idle:
		default:
			close(r.idle)
		}
	}
}

// sweep forgets forwarded calls whose deadline has passed without an
// answer: their callers have given up.
func (r *Router) sweep() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.sweeper:
			return
		case now := <-t.C:
			r.mu.Lock()
			for tok, p := range r.pending {
				if now.After(p.deadline) {
					delete(r.pending, tok)
				}
			}
			r.checkIdle()
			r.mu.Unlock()
		}
	}
}

// route takes one nested call.
func (r *Router) route(m *nats.Msg) {
	caller, service, function, ok := transport.SplitCallSubject(r.cfg.callPrefix, m.Subject)
	if !ok || !ownInbox(m.Reply, caller) {
		r.refused.Add(1)
		if r.cfg.logger != nil {
			r.cfg.logger.LogAttrs(context.Background(), slog.LevelWarn, "mesh: router: refused a nested call whose reply subject is not the caller's inbox",
				slog.String("subject", m.Subject), slog.String("reply", m.Reply))
		}
		return
	}
	out, deadline, err := r.check(m, caller, service, function)
	if err != nil {
		r.replyError(m.Reply, transport.AsError(err))
		return
	}
	tok := token()
	r.mu.Lock()
	if len(r.pending) >= maxPending {
		r.mu.Unlock()
		r.replyError(m.Reply, errRouterBusy)
		return
	}
	for r.pending[tok].reply != "" {
		tok = token()
	}
	r.pending[tok] = pendingCall{reply: m.Reply, service: service, function: function, deadline: deadline}
	r.mu.Unlock()
	out.Reply = r.replyPrefix + tok
	if err := r.nc.PublishMsg(out); err != nil {
		r.mu.Lock()
		delete(r.pending, tok)
		r.checkIdle()
		r.mu.Unlock()
		e := transport.WrapError(transport.CodeUnavailable, transport.DefaultMessage(transport.CodeUnavailable), err)
		if errors.Is(err, nats.ErrMaxPayload) {
			e = transport.WrapError(transport.CodeTooLarge, "params too large for the broker", err)
		}
		r.replyError(m.Reply, e)
	}
}

// maxPending bounds the forwarded calls a Router waits for at once; above
// it a call is answered 429 without being forwarded.
const maxPending = 100_000

var errRouterBusy = transport.NewError(transport.CodeResourceExhausted, "router busy: too many nested calls in flight, try again")

var errUnsigned = transport.NewError(transport.CodeUnauthenticated, "forwarded claims without the host's valid signature")

// check verifies what a nested call carries, asks the policy, and returns
// the call to forward and its deadline.
func (r *Router) check(m *nats.Msg, caller, service, function string) (*nats.Msg, time.Time, error) {
	now := time.Now()
	h := m.Header
	requestID := headerValue(h, transport.HeaderRequestID)
	if requestID != "" && !reqctx.ValidRequestID(requestID) {
		return nil, time.Time{}, transport.NewError(transport.CodeInvalidArgument, "invalid "+transport.HeaderRequestID+" header")
	}
	var deadline time.Time
	if v := headerValue(h, transport.HeaderDeadline); v != "" {
		d, err := transport.ParseDeadline(v)
		if err != nil {
			return nil, time.Time{}, transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderDeadline+" header", err)
		}
		deadline = d
	}
	claims := headerValue(h, transport.HeaderAuth)
	sig := headerValue(h, transport.HeaderAuthSig)
	policyCall := false
	if claims != "" || sig != "" {
		// Only the signature is checked here: claims the host signed are
		// the JSON object it sent (decoded below). A signature without
		// claims is that of an anonymous call made within a policy call:
		// it must hold too.
		if len(claims) > transport.MaxClaimsLen {
			return nil, time.Time{}, transport.NewError(transport.CodeInvalidArgument, "invalid "+transport.HeaderAuth+" header: too long")
		}
		if requestID == "" || deadline.IsZero() {
			return nil, time.Time{}, errUnsigned
		}
		switch err := r.cfg.signer.Verify(sig, claims, requestID, deadline, now); {
		case errors.Is(err, transport.ErrClaimsExpired):
			return nil, time.Time{}, transport.WrapError(transport.CodeDeadlineExceeded, "the call's deadline has passed", err)
		case err != nil:
			return nil, time.Time{}, transport.WrapError(errUnsigned.Code(), errUnsigned.Message(), err)
		}
		policyCall = r.cfg.signer.PolicyCall(sig)
	} else if limit := now.Add(r.cfg.timeout); deadline.IsZero() || deadline.After(limit) {
		// Anonymous: the deadline is the caller's word, within bounds.
		deadline = limit
	}
	signed := deadline
	if v := headerValue(h, transport.HeaderTimeoutMs); v != "" {
		d, err := transport.ParseTimeout(v)
		if err != nil {
			return nil, time.Time{}, transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderTimeoutMs+" header", err)
		}
		if t := now.Add(d); t.Before(deadline) {
			deadline = t
		}
	}
	if !now.Before(deadline) {
		return nil, time.Time{}, transport.NewError(transport.CodeDeadlineExceeded, "the call's deadline has passed")
	}
	hops := 0
	if v := headerValue(h, transport.HeaderHops); v != "" {
		n, err := transport.ParseHops(v)
		if err != nil {
			return nil, time.Time{}, transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderHops+" header", err)
		}
		hops = n
	}
	if hops >= r.cfg.maxHops {
		return nil, time.Time{}, transport.Errorf(transport.CodeLoopDetected, "call chain too deep: %d nested calls, at most %d", hops+1, r.cfg.maxHops)
	}
	callerFn, err := transport.ParseCaller(headerValue(h, transport.HeaderCaller))
	if err != nil {
		return nil, time.Time{}, transport.WrapError(transport.CodeInvalidArgument, "invalid or missing "+transport.HeaderCaller+" header: want the calling service.function", err)
	}
	if callerFn.Service != caller {
		return nil, time.Time{}, transport.Errorf(transport.CodeInvalidArgument, "%s names service %s, but the call comes from %s", transport.HeaderCaller, callerFn.Service, caller)
	}
	if callerFn == transport.PolicyCaller {
		// Only a host's policy calls as authz.policy, and never through
		// the call route: a service named authz may not pass for it.
		return nil, time.Time{}, transport.Errorf(transport.CodePermissionDenied, "%s %s is the host's policy; no service may call as it", transport.HeaderCaller, callerFn)
	}
	ct := headerValue(h, transport.HeaderContentType)
	if len(ct) > maxContentTypeLen {
		return nil, time.Time{}, transport.NewError(transport.CodeInvalidArgument, "invalid Content-Type header: too long")
	}
	if requestID == "" {
		requestID = nuid.Next()
	}

	ctx := reqctx.WithCaller(reqctx.WithRequestID(context.Background(), requestID), callerFn)
	if claims != "" {
		decoded, err := transport.DecodeClaims(claims)
		if err != nil {
			return nil, time.Time{}, transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderAuth+" header", err)
		}
		ctx = reqctx.WithClaims(ctx, decoded, []byte(claims))
	}
	if policyCall {
		// Made within a call the policy made: the policy deciding it
		// makes no call of its own (no recursion, in any process).
		ctx = reqctx.WithPolicyCall(ctx)
	}
	if err := r.authorize(ctx, service, function, m.Data); err != nil {
		return nil, time.Time{}, err
	}

	fh := make(nats.Header, 9)
	fh.Set(transport.HeaderDeadline, transport.FormatDeadline(deadline))
	fh.Set(transport.HeaderRequestID, requestID)
	fh.Set(transport.HeaderCaller, callerFn.String())
	fh.Set(transport.HeaderHops, strconv.Itoa(hops+1))
	if claims != "" {
		fh.Set(transport.HeaderAuth, claims)
	}
	if sig != "" {
		if !deadline.Equal(signed) {
			// Signed again for the sooner deadline, in the same form;
			// otherwise the signature that was checked holds for the
			// call as it is.
			if policyCall {
				sig = r.cfg.signer.SignPolicyCall(claims, requestID, deadline)
			} else {
				sig = r.cfg.signer.Sign(claims, requestID, deadline)
			}
		}
		fh.Set(transport.HeaderAuthSig, sig)
	}
	if ct != "" {
		fh.Set(transport.HeaderContentType, ct)
	}
	if v := headerValue(h, transport.HeaderTraceparent); v != "" && len(v) <= maxTraceparentLen {
		fh.Set(transport.HeaderTraceparent, v)
		if v := headerValue(h, transport.HeaderTracestate); v != "" && len(v) <= maxTracestateLen {
			fh.Set(transport.HeaderTracestate, v)
		}
	}
	return &nats.Msg{Subject: r.cfg.prefix + "." + service + "." + function, Header: fh, Data: m.Data}, deadline, nil
}

// Bounds of the trace headers a router passes on: a traceparent is 55
// bytes, and W3C limits tracestate to 32 entries of at most 256 bytes,
// though 512 bytes in all is what propagators keep.
const (
	maxTraceparentLen = 128
	maxTracestateLen  = 512
)

// relay passes the answer of a forwarded call on to the caller.
func (r *Router) relay(m *nats.Msg) {
	tok := m.Subject[len(r.replyPrefix):]
	r.mu.Lock()
	p, ok := r.pending[tok]
	delete(r.pending, tok)
	r.checkIdle()
	r.mu.Unlock()
	if !ok {
		return // the caller's deadline passed and the call was swept
	}
	if isNoResponders(m) {
		r.replyError(p.reply, transport.NewError(transport.CodeUnavailable, "no instance of "+p.service+" serves "+p.function))
		return
	}
	// The answer goes on as it came, but never with a reply subject.
	m.Subject, m.Reply = p.reply, ""
	_ = r.nc.PublishMsg(m)
}

func (r *Router) replyError(reply string, e *transport.Error) {
	h := make(nats.Header, 2)
	e.SetHeaders(h)
	_ = r.nc.PublishMsg(&nats.Msg{Subject: reply, Header: h})
}

// ownInbox reports whether reply lies under the calling service's inbox
// and is a plain subject: tokens of name characters, no wildcard.
func ownInbox(reply, caller string) bool {
	rest, ok := strings.CutPrefix(reply, transport.InboxPrefix(caller)+".")
	if !ok || rest == "" || len(reply) > 256 {
		return false
	}
	for _, tok := range strings.Split(rest, ".") {
		if transport.ValidateName(tok) != nil {
			return false
		}
	}
	return true
}
