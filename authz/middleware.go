package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// Middleware authorizes each request before next sees it. It reads the
// service and function from the route (see [WithRoute]) and the claims
// from the context (see [WithClaims]), builds the input document, and
// evaluates the policy:
//
//   - allowed: the decision's headers are set and next serves the request;
//   - denied: 403, or the policy's own 4xx status, with the policy's reason
//     as the message and the decision's headers;
//   - not decided (an evaluation error, no policy): 500 with a generic
//     message; the error goes to the logger and the decision hook only.
//
// A service or function that is not a valid name is answered with 400.
// When the policy refers to input.params, the body is read (at most
// reqctx.MaxBodyBytes, the limit middleware.BodyLimit sets, else 413),
// checked as JSON (malformed, or an object with keys that differ only in
// letter case: 400; empty: null) whatever its Content-Type says, since
// the service may read it as JSON all the same, and decoded as far as the
// policy reads it (a part read whole that would take more than 32 times
// its size: 413; more than [WithMaxDecoding] calls at once: 429). The body is then handed to next
// as a [*Body] over the same bytes. Every error body is written by
// transport.WriteHTTPError.
//
// Middleware fits alice and the standard library:
// alice.New(jwt, a.Middleware).Then(gateway).
func (a *Authorizer) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p *policy
		cfg := &defaultConfig
		if a != nil {
			p = a.current.Load()
			cfg = &a.cfg
		}
		in := Input{}
		in.Service, in.Function = cfg.route(r)
		if err := validateNames(in.Service, in.Function); err != nil {
			transport.WriteHTTPError(w, err)
			return
		}
		ctx := r.Context()
		var (
			params any
			cp     *callPlan
			held   bool // a decoding slot
		)
		if p != nil {
			cp = p.plan(ctx, in.Service, in.Function)
			if cfg.claims != nil {
				if claims, ok := cfg.claims(ctx); ok && claims != nil {
					in.Auth = claims
				}
			}
			in.Caller = callerOf(ctx)
			if cp.uses.has("token") {
				in.Token, _ = reqctx.Token(ctx)
			}
			if cp.params != nil {
				limit, _ := reqctx.MaxBodyBytes(ctx)
				data, err := readBody(r, limit)
				if err != nil {
					transport.WriteHTTPError(w, err)
					return
				}
				in.Params = json.RawMessage(data)
				// The body is read (at most limit); what decoding it
				// and deciding take is bounded by the slots.
				if !a.acquire() {
					transport.WriteHTTPError(w, errBusy)
					return
				}
				held = true
				if params, err = bodyParams(data, cp.params); err != nil {
					a.release()
					transport.WriteHTTPError(w, err)
					return
				}
			}
			if cp.uses.has("http") {
				in.HTTP = &HTTPInput{Method: r.Method, Path: r.URL.Path, Headers: map[string]string{}}
				for _, name := range cfg.headers {
					if vs := r.Header.Values(name); len(vs) > 0 {
						in.HTTP.Headers[name] = strings.Join(vs, ", ")
					}
				}
			}
		}
		d, err := a.decide(ctx, p, &in, cp, params, true)
		if held {
			a.release()
		}
		if err != nil {
			transport.WriteHTTPError(w, err)
			return
		}
		h := w.Header()
		for k, vs := range d.Headers {
			h[k] = vs
		}
		if !d.Allow {
			transport.WriteHTTPError(w, d.Err())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readBody reads the request body for input.params, and gives next a
// *Body over the same bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	size := int64(bytes.MinRead)
	if r.ContentLength > 0 && r.ContentLength <= limit {
		size += r.ContentLength // read in one buffer of the declared size
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	_, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	data := buf.Bytes()
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, transport.WrapError(transport.CodeTooLarge, transport.DefaultMessage(transport.CodeTooLarge), err)
		}
		return nil, transport.WrapError(transport.CodeInvalidArgument, "could not read the request body", err)
	}
	if int64(len(data)) > limit {
		return nil, transport.WrapError(transport.CodeTooLarge, transport.DefaultMessage(transport.CodeTooLarge), errors.New("authz: body over the limit"))
	}
	body := NewBody(data)
	r.Body = body
	r.ContentLength = int64(len(data))
	r.GetBody = func() (io.ReadCloser, error) { return NewBody(data), nil }
	return data, nil
}

// bodyParams decodes what t reads of a request body, with errors for the
// caller.
func bodyParams(data []byte, t *readTree) (any, error) {
	if len(data) == 0 {
		return nil, nil
	}
	v, err := goParams(json.RawMessage(data), t)
	switch {
	case errors.Is(err, errParamsCost):
		return nil, transport.WrapError(transport.CodeTooLarge, "request body too large for the policy to read", err)
	case errors.Is(err, errParamsCase):
		return nil, transport.WrapError(transport.CodeInvalidArgument, "keys in the request body differ only in letter case", err)
	case err != nil:
		return nil, transport.WrapError(transport.CodeInvalidArgument, "malformed JSON in the request body", err)
	}
	return v, nil
}
