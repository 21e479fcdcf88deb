package mesh

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// maxContentTypeLen bounds the Content-Type a call carries.
const maxContentTypeLen = 256

// maxSigLen bounds the Mesh-Auth-Sig a call passes on: a signature is
// about 50 bytes.
const maxSigLen = 256

// Call is one call being served: what a function learns about the request
// besides its context. A Call is valid until the function returns; the
// context given to the function carries it (see [CallFromContext]), so a
// call made with that context through any [Client] passes the claims,
// request ID, deadline and trace on.
type Call struct {
	svc      *Service
	ep       *endpoint
	params   []byte
	deadline time.Time

	rawClaims   string
	rawSig      string // Mesh-Auth-Sig, passed on with the claims
	hops        int    // Mesh-Hops
	requestID   string
	caller      transport.Caller
	hasCaller   bool
	contentType string

	claimsOnce sync.Once
	claims     map[string]any

	replyContentType string

	header nats.Header // the request's
	reply  string      // the reply subject
	ctx    callCtx     // the function's context
}

// Service returns the name of the service being called.
func (c *Call) Service() string { return c.svc.name }

// Function returns the name of the function being called.
func (c *Call) Function() string { return c.ep.name }

// Params returns the call's params as sent, JSON by convention. The bytes
// belong to the call; copy them to keep them after the function returns.
func (c *Call) Params() []byte { return c.params }

// Decode decodes the params, a JSON document, into v. Empty params are
// taken as JSON null, which leaves v unchanged. Malformed params yield an
// error with code invalid_argument (400) that says what is wrong, ready to
// be returned by the function.
func (c *Call) Decode(v any) error {
	return decodeParams(c.params, v)
}

func decodeParams(params []byte, v any) error {
	if len(params) == 0 {
		return nil
	}
	if err := json.Unmarshal(params, v); err != nil {
		return transport.WrapError(transport.CodeInvalidArgument, "invalid params: "+jsonErrorText(err), err)
	}
	return nil
}

// jsonErrorText says what is wrong with params that encoding/json could
// not decode, from the fields of its error.
func jsonErrorText(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		where := te.Type.String()
		if te.Field != "" {
			where = "field " + te.Field + " of type " + where
		}
		return "cannot decode a JSON " + te.Value + " into " + where
	}
	return "malformed JSON"
}

// Claims returns the caller's verified claims that the gateway (or the
// calling function) passed in the Mesh-Auth header, and false for an
// anonymous caller. They are decoded on first use; numbers are
// json.Number.
func (c *Call) Claims() (map[string]any, bool) {
	if c.rawClaims == "" {
		return nil, false
	}
	c.claimsOnce.Do(func() {
		// The header was checked on arrival, so this cannot fail.
		c.claims, _ = transport.DecodeClaims(c.rawClaims)
	})
	return c.claims, c.claims != nil
}

// ClaimsJSON returns the caller's verified claims as the JSON object they
// travelled as, and false for an anonymous caller.
func (c *Call) ClaimsJSON() ([]byte, bool) {
	if c.rawClaims == "" {
		return nil, false
	}
	return []byte(c.rawClaims), true
}

// RequestID returns the request ID the call carries ("" if none).
func (c *Call) RequestID() string { return c.requestID }

// Caller returns the function that made the call, and false when the call
// did not come from a function (from the gateway, say).
func (c *Call) Caller() (transport.Caller, bool) { return c.caller, c.hasCaller }

// Header returns the first value of the request header name, exactly as
// sent ("" if absent): for a durable call, transport.HeaderTaskID and
// transport.HeaderTaskAttempt; for an event trigger, the CloudEvents
// ce-* attributes too.
func (c *Call) Header(name string) string {
	if v := c.header[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ContentType returns the media type of the params ("" if the caller did
// not say).
func (c *Call) ContentType() string { return c.contentType }

// Deadline returns when the caller stops waiting; the function's context
// ends then.
func (c *Call) Deadline() time.Time { return c.deadline }

// SetReplyContentType sets the media type of the function's result. The
// default is application/json, which is also what a reply without a
// Content-Type header means.
func (c *Call) SetReplyContentType(ct string) { c.replyContentType = ct }

// Client returns a client that shares the service's connection, prefix,
// tracer and metrics, for calling other functions from this one. Call it
// with the function's context so the claims, request ID, deadline and
// trace travel on and the call passes the host's router and policy as this
// function's (see [Router]).
func (c *Call) Client() *Client { return c.svc.client }

// parseHeaders reads the Mesh-* and trace headers of a request. It returns
// an invalid_argument error for a header that cannot be trusted; a missing
// header is never an error.
func (c *Call) parseHeaders(h nats.Header, now time.Time, timeout time.Duration) error {
	if h == nil {
		c.deadline = now.Add(timeout)
		return nil
	}
	if v := headerValue(h, transport.HeaderDeadline); v != "" {
		d, err := transport.ParseDeadline(v)
		if err != nil {
			return transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderDeadline+" header", err)
		}
		c.deadline = d
	} else {
		c.deadline = now.Add(timeout)
	}
	if v := headerValue(h, transport.HeaderAuth); v != "" {
		if !validClaims(v) {
			return transport.NewError(transport.CodeInvalidArgument, "invalid "+transport.HeaderAuth+" header: want a JSON object")
		}
		c.rawClaims = v
	}
	if sig := headerValue(h, transport.HeaderAuthSig); len(sig) <= maxSigLen {
		// The service cannot check it (only hosts hold the key): it
		// passes it on, and the router that routes its nested calls
		// checks it. A call the policy made carries one without claims
		// too: its mark.
		c.rawSig = sig
	}
	if v := headerValue(h, transport.HeaderHops); v != "" {
		n, err := transport.ParseHops(v)
		if err != nil {
			return transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderHops+" header", err)
		}
		c.hops = n
	}
	if v := headerValue(h, transport.HeaderRequestID); v != "" {
		if !reqctx.ValidRequestID(v) {
			return transport.NewError(transport.CodeInvalidArgument, "invalid "+transport.HeaderRequestID+" header")
		}
		c.requestID = v
	}
	if v := headerValue(h, transport.HeaderCaller); v != "" {
		caller, err := transport.ParseCaller(v)
		if err != nil {
			return transport.WrapError(transport.CodeInvalidArgument, "invalid "+transport.HeaderCaller+" header", err)
		}
		c.caller, c.hasCaller = caller, true
	}
	if v := headerValue(h, transport.HeaderContentType); v != "" {
		if len(v) > maxContentTypeLen {
			return transport.NewError(transport.CodeInvalidArgument, "invalid Content-Type header: too long")
		}
		c.contentType = v
	}
	return nil
}

// headerValue returns the first value of a header: nats.Header is
// case-sensitive and every sender of the contract uses the canonical names.
func headerValue(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// validClaims reports whether s is a JSON object that transport.DecodeClaims
// accepts, without decoding it.
func validClaims(s string) bool {
	if len(s) > transport.MaxClaimsLen {
		return false
	}
	t := strings.TrimLeft(s, " \t\r\n")
	if t == "" || t[0] != '{' {
		return false
	}
	return json.Valid([]byte(s))
}
