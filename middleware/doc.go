// Package middleware holds the HTTP middleware a production app puts in
// front of the funcmesh gateway (or any other handler). Each piece is a
// plain func(http.Handler) http.Handler, so it composes with alice, chi and
// the standard library alike.
//
// What the middleware learns about a request travels in its context and is
// read through small getters, [ClaimsFromContext] and
// [RequestIDFromContext], so that the mesh and authz packages never need to
// know which middleware put it there.
package middleware
