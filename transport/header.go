package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names. Every header constant of funcmesh is named Header followed
// by the header's name in Go spelling, without a Mesh- prefix:
// Mesh-Request-Id is HeaderRequestID, Mesh-Timeout-Ms is
// [HeaderTimeoutMs], X-Request-Id is [HeaderXRequestID].
//
// The headers of a call (a NATS message) below are set by the mesh only:
// a gateway forwards no header an HTTP client sent, so none can be
// forged. [HeaderAuthSig] and [HeaderHops] belong to them too.
const (
	HeaderAuth        = "Mesh-Auth"
	HeaderDeadline    = "Mesh-Deadline"
	HeaderRequestID   = "Mesh-Request-Id"
	HeaderCaller      = "Mesh-Caller"
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	HeaderContentType = "Content-Type"

	// HeaderTaskID and HeaderTaskAttempt come with a durable (async)
	// call: the task's ID, the same on every attempt, and the attempt's
	// number, from 1. A function makes its effect idempotent by the ID.
	HeaderTaskID      = "Mesh-Task-Id"
	HeaderTaskAttempt = "Mesh-Task-Attempt"

	// HeaderServiceError and HeaderServiceErrorCode mark an error reply,
	// as in NATS micro.
	HeaderServiceError     = "Nats-Service-Error"
	HeaderServiceErrorCode = "Nats-Service-Error-Code"
)

// HeaderXRequestID is the HTTP header that carries the request ID to and
// from HTTP clients; a call carries it in [HeaderRequestID].
const HeaderXRequestID = "X-Request-Id"

// FormatDeadline encodes a deadline for the Mesh-Deadline header.
func FormatDeadline(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// ParseDeadline decodes a Mesh-Deadline header value.
func ParseDeadline(s string) (time.Time, error) {
	if s == "" || len(s) > 19 {
		return time.Time{}, fmt.Errorf("transport: deadline %q: want Unix milliseconds", s)
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, fmt.Errorf("transport: deadline %q: want positive Unix milliseconds", s)
	}
	return time.UnixMilli(ms), nil
}

// Caller names the function that made a call, sent as "service.function"
// in the Mesh-Caller header.
type Caller struct {
	Service  string `json:"service"`
	Function string `json:"function"`
}

// PolicyCaller is the caller of the calls a host's policy makes (authz's
// func rules and funcmesh.call): a function the policy calls sees
// Mesh-Caller "authz.policy". Only a host sends it; a router refuses a
// nested call that claims it, whatever service makes it.
var PolicyCaller = Caller{Service: "authz", Function: "policy"}

// String returns the header form, "service.function".
func (c Caller) String() string { return c.Service + "." + c.Function }

// ParseCaller decodes a Mesh-Caller header value.
func ParseCaller(s string) (Caller, error) {
	svc, fn, ok := strings.Cut(s, ".")
	if !ok {
		return Caller{}, fmt.Errorf("transport: caller %q: want service.function", s)
	}
	if err := errors.Join(ValidateName(svc), ValidateName(fn)); err != nil {
		return Caller{}, fmt.Errorf("transport: caller %q: %w", s, err)
	}
	return Caller{Service: svc, Function: fn}, nil
}
