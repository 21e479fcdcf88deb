package middleware

import (
	"context"
	"encoding/json"
)

type claimsKey struct{}

type claimsValue struct {
	claims map[string]any
	raw    []byte
}

// WithClaims returns a context that carries a caller's verified claims.
// raw, when not nil, is the same claims as the JSON object they were
// decoded from, so that code forwarding them (the mesh's Mesh-Auth header)
// need not encode them again. The JWT middleware calls it; call it yourself
// when you authenticate callers some other way.
func WithClaims(ctx context.Context, claims map[string]any, raw []byte) context.Context {
	return context.WithValue(ctx, claimsKey{}, claimsValue{claims: claims, raw: raw})
}

// ClaimsFromContext returns the verified claims put in ctx by [WithClaims],
// and false for an anonymous caller.
//
// The map is read-only: the JWT middleware gives every request that
// carries the same token the same map, from its verifier's cache (see
// [JWTOptions].CacheSize). Copy it to change it.
func ClaimsFromContext(ctx context.Context) (map[string]any, bool) {
	v, ok := ctx.Value(claimsKey{}).(claimsValue)
	if !ok || v.claims == nil {
		return nil, false
	}
	return v.claims, true
}

// ClaimsJSONFromContext returns the verified claims in ctx as a JSON
// object, and false for an anonymous caller. Like the map of
// [ClaimsFromContext], the slice may be shared between requests: it is
// read-only.
func ClaimsJSONFromContext(ctx context.Context) ([]byte, bool) {
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

type requestIDKey struct{}

// WithRequestID returns a context that carries a request ID.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFromContext returns the request ID put in ctx by the RequestID
// middleware (or [WithRequestID]).
func RequestIDFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey{}).(string)
	return id, ok && id != ""
}
