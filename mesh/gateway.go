package mesh

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// headerRoom is the part of the broker's max payload the gateway keeps for
// the headers of a call besides the claims.
const headerRoom = 4 << 10

// Gateway is the http.Handler that turns an HTTP request into a call:
// POST /fn/{service}/{function} with the params as the body. Mount it
// behind the middleware that authenticates and authorizes callers:
//
//	mux.Handle("POST /fn/{service}/{function}", chain.Then(gw))
//
// It answers 405 to any method but POST, reads the names from the route,
// checks them (400), reads the body within the limit (413: the limit of
// middleware.BodyLimit in front of it, never above what the broker
// carries), makes the
// call with the request's context through Client (which sends the
// deadline, request ID, verified claims and trace context: headers the
// HTTP client sent are never forwarded, so no Mesh-* header can be
// forged) and writes the result with the
// function's content type and 200, or the error as a JSON body with the
// status of the table in the package documentation. The body is never
// parsed: the params pass through as bytes.
//
// The call's deadline is the request context's, else the Client's
// timeout: the gateway's maximum. A caller may ask for less with the
// Mesh-Timeout-Ms request header ([transport.HeaderTimeoutMs], decimal
// milliseconds); a longer value leaves the maximum as it is, and a value
// that is not 1 to 10 digits above zero is a 400. The function's context
// and the Mesh-Deadline header carry the resulting deadline.
//
// Like httputil.ReverseProxy it is configured by its fields, whose zero
// values are the defaults; set them before the first request and do not
// change them after.
type Gateway struct {
	// Client makes the calls; it is required.
	Client *Client

	// Route returns the service and function a request calls, as
	// authz.WithRoute does for the policy. nil reads r.PathValue("service")
	// and r.PathValue("function"), which a net/http ServeMux pattern like
	// "POST /fn/{service}/{function}" sets; give a function here for
	// another router.
	Route func(r *http.Request) (service, function string)

	// MaxInFlight bounds the calls the gateway makes at once; above it the
	// answer is 429 at once. 0 means no bound.
	MaxInFlight int

	// Discovery tells a missing function (404) from a missing service
	// (503) when no instance answers a call (see [Discovery.Running]);
	// only such a failed call ever costs a discovery round trip. nil uses
	// a Discovery on Client's connection and prefix with the default
	// settings.
	Discovery *Discovery

	// ErrorHandler writes the response for a failed call; err is a
	// *transport.Error whose Unwrap holds the internal cause. nil logs a
	// server error (5xx) to the Client's logger ([WithLogger]: the
	// request ID, service, function and the cause's text, which the HTTP
	// caller never sees) and writes err with [transport.WriteHTTPError].
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	discOnce sync.Once
	disc     *Discovery
	inFlight atomic.Int64
}

// NewGateway returns a Gateway whose Client calls over nc with opts.
func NewGateway(nc *nats.Conn, opts ...ClientOption) (*Gateway, error) {
	c, err := NewClient(nc, opts...)
	if err != nil {
		return nil, err
	}
	return &Gateway{Client: c}, nil
}

var (
	errGatewayBusy = transport.NewError(transport.CodeResourceExhausted, "gateway busy: too many calls in flight, try again")
	errMethod      = transport.ErrorWithStatus(http.StatusMethodNotAllowed, "method not allowed: call functions with POST")

	// Shared header values: net/http never modifies a value slice in
	// place, and handlers after this one replace, not edit, them.
	jsonContentTypeValue = []string{jsonContentType}
	nosniffValue         = []string{"nosniff"}
)

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.Client == nil {
		panic("mesh: Gateway.Client is nil")
	}
	// Without the request ID middleware the gateway names the call
	// itself, first, so that every error body carries the ID and agrees
	// with the service's logs.
	ctx := reqctx.EnsureRequestID(r.Context(), w.Header())
	if r.Method != http.MethodPost {
		// Mounted on a pattern without a method (as CORS needs), a GET
		// from a link or an image tag must not make the call.
		w.Header().Set("Allow", http.MethodPost)
		g.fail(w, r, "", "", errMethod)
		return
	}
	if g.MaxInFlight > 0 {
		if g.inFlight.Add(1) > int64(g.MaxInFlight) {
			g.inFlight.Add(-1)
			g.fail(w, r, "", "", errGatewayBusy)
			return
		}
		defer g.inFlight.Add(-1)
	}
	var service, function string
	if g.Route != nil {
		service, function = g.Route(r)
	} else {
		service, function = r.PathValue("service"), r.PathValue("function")
	}
	if err := transport.ValidateName(service); err != nil {
		g.fail(w, r, service, function, transport.WrapError(transport.CodeInvalidArgument, "invalid service name: "+nameProblem(err), err))
		return
	}
	if err := transport.ValidateName(function); err != nil {
		g.fail(w, r, service, function, transport.WrapError(transport.CodeInvalidArgument, "invalid function name: "+nameProblem(err), err))
		return
	}

	if vs := r.Header[transport.HeaderTimeoutMs]; vs != nil {
		tctx, cancel, err := g.callerTimeout(ctx, vs)
		if err != nil {
			g.fail(w, r, service, function, err)
			return
		}
		defer cancel()
		ctx = tctx
	}

	body, buf, err := g.readBody(ctx, r)
	if buf != nil {
		defer putBuffer(buf)
	}
	if err != nil {
		g.fail(w, r, service, function, err)
		return
	}
	rep, err := g.Client.Do(ctx, &Request{
		Service:     service,
		Function:    function,
		Params:      body,
		ContentType: r.Header.Get("Content-Type"),
	})
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			err = g.noResponders(r, service, function, err)
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			// The connection now has a smaller max payload than the
			// one read last.
			g.Client.maxPayload(true)
		}
		g.fail(w, r, service, function, err)
		return
	}
	h := w.Header()
	if rep.ContentType == jsonContentType {
		h["Content-Type"] = jsonContentTypeValue
	} else {
		h["Content-Type"] = []string{rep.ContentType}
	}
	h["X-Content-Type-Options"] = nosniffValue
	if len(rep.Body) > 2048 {
		// net/http sets it itself for smaller bodies written at once.
		h["Content-Length"] = []string{strconv.Itoa(len(rep.Body))}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rep.Body)
}

// bodyLimit is the largest body the call may carry: the limit of
// middleware.BodyLimit (reqctx.MaxBodyBytes), never above what the broker
// takes, which is the limit without one: the connection's max payload
// (maxPayload) less 4 KiB for the call's headers and less the claims.
func (g *Gateway) bodyLimit(ctx context.Context, maxPayload int64) int64 {
	limit := maxPayload - headerRoom
	if raw, ok := reqctx.ClaimsJSON(ctx); ok {
		limit -= int64(len(raw))
	}
	if n, ok := reqctx.MaxBodyBytes(ctx); ok && n < limit {
		return n
	}
	return max(limit, 0)
}

// callerTimeout returns ctx ending at the deadline the caller asked for in
// the Mesh-Timeout-Ms header (vs, its values) when that comes before the
// gateway's own: the request context's deadline, else the Client's
// timeout. A value that is not one header of 1 to 10 digits above zero is
// a 400.
func (g *Gateway) callerTimeout(ctx context.Context, vs []string) (context.Context, context.CancelFunc, error) {
	if len(vs) != 1 {
		return nil, nil, transport.NewError(transport.CodeInvalidArgument, "more than one "+transport.HeaderTimeoutMs+" header")
	}
	d, err := transport.ParseTimeout(vs[0])
	if err != nil {
		return nil, nil, transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderTimeoutMs+" header: want milliseconds, 1 to 10 digits, above 0", err)
	}
	if _, ok := ctx.Deadline(); !ok && d >= g.Client.timeout {
		return ctx, func() {}, nil
	}
	// With a deadline of its own, ctx keeps it when it comes first.
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

// noResponders tells a missing function from a missing service.
func (g *Gateway) noResponders(r *http.Request, service, function string, err error) error {
	g.discOnce.Do(func() {
		g.disc = g.Discovery
		if g.disc == nil {
			g.disc, _ = NewDiscovery(g.Client.nc, WithPrefix(g.Client.prefix))
		}
	})
	running, perr := g.disc.Running(r.Context(), service)
	if perr == nil && running {
		return transport.WrapError(transport.CodeNotFound, "service "+service+" has no function "+function, err)
	}
	return transport.WrapError(transport.CodeUnavailable, "service "+service+" is not running", err)
}

// fail reports and writes a failed call.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, service, function string, err error) {
	if g.ErrorHandler != nil {
		g.ErrorHandler(w, r, err)
		return
	}
	e := transport.AsError(err)
	if log := g.Client.logger; log != nil && e.HTTPStatus() >= 500 {
		level := slog.LevelWarn
		if e.Code() == transport.CodeInternal || e.Code() == transport.CodeBadReply {
			level = slog.LevelError
		}
		attrs := []slog.Attr{
			slog.String("request_id", w.Header().Get(transport.HeaderXRequestID)),
			slog.String("service", service),
			slog.String("function", function),
			slog.Int("status", e.HTTPStatus()),
			slog.String("error", e.Error()),
		}
		if id, ok := reqctx.RequestID(r.Context()); ok {
			attrs[0] = slog.String("request_id", id)
		}
		if cause := e.Unwrap(); cause != nil {
			attrs = append(attrs, slog.String("cause", cause.Error()))
		}
		log.LogAttrs(r.Context(), level, "mesh: gateway call failed", attrs...)
	}
	transport.WriteHTTPError(w, e)
}

// bufferPool holds body buffers; buffers above maxPooledBuffer are left
// to the garbage collector. Kept because it measurably matters: with
// io.ReadAll instead, BenchmarkCall/mesh-bare/16k allocates 46% more bytes
// per call (docs/performance.md, "Plain code instead of tricks").
var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

const maxPooledBuffer = 1 << 20

func putBuffer(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		*b = (*b)[:0]
		bufferPool.Put(b)
	}
}

// BytesBody is a request body that holds all its bytes, like the one the
// authz middleware gives the handler after it has read the params: the
// gateway sends Bytes as the params, within its body limit, without
// reading or copying the body. Bytes must return the whole body whatever
// has been read of it, and the slice must not change while the request is
// served.
type BytesBody interface {
	io.ReadCloser
	Bytes() []byte
}

// readBody reads the request body within [Gateway.bodyLimit]. A
// [BytesBody] is used as it is; otherwise the bytes land in a pooled
// buffer, returned for the caller to put back once the call is made
// (nats.go copies the params into its write buffer when it publishes).
// The limit is worked out from the max payload the Client read last, and
// from the connection's own before a body is refused for it.
func (g *Gateway) readBody(ctx context.Context, r *http.Request) ([]byte, *[]byte, error) {
	limit := g.bodyLimit(ctx, g.Client.maxPayload(false))
	over := func(n int64) bool {
		if n <= limit {
			return false
		}
		limit = g.bodyLimit(ctx, g.Client.maxPayload(true))
		return n > limit
	}
	tooLarge := func(cause error) error {
		return transport.WrapError(transport.CodeTooLarge, "request body over "+strconv.FormatInt(limit, 10)+" bytes", cause)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil, nil
	}
	if bb, ok := r.Body.(BytesBody); ok {
		b := bb.Bytes()
		if over(int64(len(b))) {
			return nil, nil, tooLarge(nil)
		}
		return b, nil, nil
	}
	if over(r.ContentLength) {
		return nil, nil, tooLarge(nil)
	}
	bp := bufferPool.Get().(*[]byte)
	b := (*bp)[:0]
	if want := r.ContentLength + 1; want > int64(cap(b)) {
		b = make([]byte, 0, want)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if over(int64(len(b))) {
			*bp = b
			return nil, bp, tooLarge(nil)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return nil, bp, tooLarge(mbe)
			}
			return nil, bp, transport.WrapError(transport.CodeInvalidArgument, "reading the request body failed", err)
		}
	}
	*bp = b
	return b, bp, nil
}
