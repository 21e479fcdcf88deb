package transport

import "net/http"

// Code is the kind of a failed call. The set is closed: every error the mesh
// reports carries one of the codes below, and each maps to one HTTP status.
type Code string

// The codes, with the HTTP status each maps to.
const (
	CodeInvalidArgument   Code = "invalid_argument"   // 400
	CodeUnauthenticated   Code = "unauthenticated"    // 401
	CodePermissionDenied  Code = "permission_denied"  // 403
	CodeNotFound          Code = "not_found"          // 404
	CodeConflict          Code = "conflict"           // 409
	CodeTooLarge          Code = "too_large"          // 413
	CodeUnprocessable     Code = "unprocessable"      // 422
	CodeResourceExhausted Code = "resource_exhausted" // 429
	CodeCanceled          Code = "canceled"           // 499, the caller went away
	CodeInternal          Code = "internal"           // 500
	CodeNotImplemented    Code = "not_implemented"    // 501
	CodeBadReply          Code = "bad_reply"          // 502
	CodeUnavailable       Code = "unavailable"        // 503
	CodeDeadlineExceeded  Code = "deadline_exceeded"  // 504
	CodeLoopDetected      Code = "loop_detected"      // 508, a chain of nested calls past the hop limit
)

// StatusClientClosedRequest is the status (nginx's 499) recorded when the
// caller cancelled the call; nobody is left to read it.
const StatusClientClosedRequest = 499

// codeStatus is the one place codes map to HTTP statuses.
var codeStatus = map[Code]int{
	CodeInvalidArgument:   http.StatusBadRequest,
	CodeUnauthenticated:   http.StatusUnauthorized,
	CodePermissionDenied:  http.StatusForbidden,
	CodeNotFound:          http.StatusNotFound,
	CodeConflict:          http.StatusConflict,
	CodeTooLarge:          http.StatusRequestEntityTooLarge,
	CodeUnprocessable:     http.StatusUnprocessableEntity,
	CodeResourceExhausted: http.StatusTooManyRequests,
	CodeCanceled:          StatusClientClosedRequest,
	CodeInternal:          http.StatusInternalServerError,
	CodeNotImplemented:    http.StatusNotImplemented,
	CodeBadReply:          http.StatusBadGateway,
	CodeUnavailable:       http.StatusServiceUnavailable,
	CodeDeadlineExceeded:  http.StatusGatewayTimeout,
	CodeLoopDetected:      http.StatusLoopDetected,
}

var statusCode = func() map[int]Code {
	m := make(map[int]Code, len(codeStatus))
	for c, s := range codeStatus {
		m[s] = c
	}
	return m
}()

// Codes returns every code, in order of status.
func Codes() []Code {
	return []Code{
		CodeInvalidArgument, CodeUnauthenticated, CodePermissionDenied, CodeNotFound,
		CodeConflict, CodeTooLarge, CodeUnprocessable, CodeResourceExhausted, CodeCanceled,
		CodeInternal, CodeNotImplemented, CodeBadReply, CodeUnavailable, CodeDeadlineExceeded,
		CodeLoopDetected,
	}
}

// Valid reports whether c is one of the codes.
func (c Code) Valid() bool {
	_, ok := codeStatus[c]
	return ok
}

// HTTPStatus returns the status for c; 500 for a code outside the set.
func (c Code) HTTPStatus() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeForStatus returns the code for an HTTP status from 400 to 599. A
// status outside the table takes the code of its class: invalid_argument
// for 4xx, internal for 5xx. It returns false for statuses outside 400-599.
func CodeForStatus(status int) (Code, bool) {
	if c, ok := statusCode[status]; ok {
		return c, true
	}
	switch {
	case status >= 400 && status < 500:
		return CodeInvalidArgument, true
	case status >= 500 && status < 600:
		return CodeInternal, true
	}
	return "", false
}
