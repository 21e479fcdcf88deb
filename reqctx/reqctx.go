// Package reqctx carries the values that belong to one request through
// every layer of funcmesh: the request ID, the caller's verified claims
// and, for a call made by a function, the calling function. middleware
// puts them in the context, authz reads them for the policy, and mesh
// sends them on with each call; all three import this package and nothing
// else of each other's for it. It also marks the calls a policy makes
// ([WithPolicyCall]).
//
// Keys are unexported; values are read with the functions below, which
// answer false when a value is absent.
package reqctx

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/funcmesh/funcmesh/transport"
	"github.com/nats-io/nuid"
)

// MaxRequestIDLen is the longest request ID accepted anywhere: from an
// HTTP client's X-Request-Id, in a context, or in a call's Mesh-Request-Id.
const MaxRequestIDLen = 64

// ValidRequestID reports whether s is acceptable as a request ID: 1 to
// [MaxRequestIDLen] bytes of ASCII letters, digits and - _ . : + / =
// (enough for UUIDs, ULIDs, hex and base64 trace IDs), so an ID can go
// into a header, a log line, a JSON body or a NATS header unescaped, and
// can never smuggle a line break, a quote or a space.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

type requestIDKey struct{}

// WithRequestID returns a context that carries a request ID. An ID that
// [ValidRequestID] refuses is not stored: [RequestID] then answers false,
// and whoever needs an ID makes a new one.
func WithRequestID(ctx context.Context, id string) context.Context {
	if !ValidRequestID(id) {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request ID put in ctx by [WithRequestID].
func RequestID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey{}).(string)
	return id, ok
}

type claimsKey struct{}

type claimsValue struct {
	claims map[string]any
	raw    []byte
	token  string
}

// WithClaims returns a context that carries a caller's verified claims.
// raw, when not nil, is the same claims as the JSON object they were
// decoded from, so that code forwarding them (the Mesh-Auth header) need
// not encode them again. Nil claims mean an anonymous caller. The JWT
// middleware calls it; call it yourself when you authenticate callers
// some other way.
func WithClaims(ctx context.Context, claims map[string]any, raw []byte) context.Context {
	return context.WithValue(ctx, claimsKey{}, claimsValue{claims: claims, raw: raw})
}

// WithTokenClaims is [WithClaims] for claims verified from a bearer token:
// token, as the caller sent it, is kept for code that must pass it on (a
// policy's input.token, a webhook); [Token] returns it. The JWT
// middleware calls it.
func WithTokenClaims(ctx context.Context, claims map[string]any, raw []byte, token string) context.Context {
	return context.WithValue(ctx, claimsKey{}, claimsValue{claims: claims, raw: raw, token: token})
}

// Token returns the bearer token put in ctx by [WithTokenClaims], and
// false when there is none.
func Token(ctx context.Context) (string, bool) {
	v, ok := ctx.Value(claimsKey{}).(claimsValue)
	if !ok || v.token == "" {
		return "", false
	}
	return v.token, true
}

// Claims returns the verified claims put in ctx by [WithClaims], and false
// for an anonymous caller. The map may be shared between requests that
// carry the same token: it is read-only; copy it to change it.
func Claims(ctx context.Context) (map[string]any, bool) {
	v, ok := ctx.Value(claimsKey{}).(claimsValue)
	if !ok || v.claims == nil {
		return nil, false
	}
	return v.claims, true
}

// ClaimsJSON returns the verified claims in ctx as a JSON object, and
// false for an anonymous caller. Like the map of [Claims], the slice is
// read-only.
func ClaimsJSON(ctx context.Context) ([]byte, bool) {
	v, ok := ctx.Value(claimsKey{}).(claimsValue)
	if !ok || v.claims == nil {
		return nil, false
	}
	if v.raw != nil {
		return v.raw, true
	}
	b, err := json.Marshal(v.claims)
	if err != nil {
		return nil, false
	}
	return b, true
}

type callerKey struct{}

// WithCaller returns a context that carries the function that made the
// call being handled (a nested call). The policy sees it as input.caller.
func WithCaller(ctx context.Context, c transport.Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// Caller returns the calling function put in ctx by [WithCaller], and
// false for a call that no function made (from HTTP, say).
func Caller(ctx context.Context) (transport.Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(transport.Caller)
	return c, ok
}

type policyCallKey struct{}

// WithPolicyCall returns a context that marks what is done in it as part
// of a call the policy made (authz's func rules and funcmesh.call), or of
// a call made from within one. authz marks the calls its policy makes; a
// mesh.Client signs such a call with the mark ([transport.ClaimsSigner]
// SignPolicyCall), the function passes the mark on with its own nested
// calls, and the router that routes them marks the context it decides
// them in. The policy makes no call in a marked context: a function the
// policy asks cannot make the policy ask again, in any process.
func WithPolicyCall(ctx context.Context) context.Context {
	return context.WithValue(ctx, policyCallKey{}, true)
}

// PolicyCall reports whether ctx was marked by [WithPolicyCall].
func PolicyCall(ctx context.Context) bool {
	v, _ := ctx.Value(policyCallKey{}).(bool)
	return v
}

// EnsureRequestID returns ctx with a request ID for a handler that may run
// without the RequestID middleware in front of it: the ID ctx has; else
// the X-Request-Id an earlier handler set on the response header h, when
// valid; else a new one (a NATS NUID), which it also sets on h, so every
// error body and log line of the request carries the same ID.
func EnsureRequestID(ctx context.Context, h http.Header) context.Context {
	if _, ok := RequestID(ctx); ok {
		return ctx
	}
	id := h.Get(transport.HeaderXRequestID)
	if !ValidRequestID(id) {
		id = nuid.Next()
		h.Set(transport.HeaderXRequestID, id)
	}
	return WithRequestID(ctx, id)
}

// DefaultMaxBodyBytes is the request body limit of a handler that reads
// the whole body (the authz middleware, the async and event handlers,
// the Space Cloud handler) when no [WithMaxBodyBytes] set one: 1 MiB,
// NATS's default max payload.
const DefaultMaxBodyBytes = 1 << 20

type maxBodyKey struct{}

// WithMaxBodyBytes returns a context that carries the request body limit,
// n bytes. middleware.BodyLimit sets it, so that the limit is given in one
// place: every funcmesh handler that reads the body reads at most
// [MaxBodyBytes] and answers 413 above it.
func WithMaxBodyBytes(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, maxBodyKey{}, n)
}

// MaxBodyBytes returns the body limit put in ctx by [WithMaxBodyBytes],
// else [DefaultMaxBodyBytes]; ok reports whether one was put there. The
// mesh gateway bounds it further by what the broker carries.
func MaxBodyBytes(ctx context.Context) (n int64, ok bool) {
	n, ok = ctx.Value(maxBodyKey{}).(int64)
	if !ok || n <= 0 {
		return DefaultMaxBodyBytes, false
	}
	return n, true
}
