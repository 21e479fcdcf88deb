package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Error is a failed call: a [Code], a message that is safe to show to the
// caller, and the HTTP status the gateway answers with (the code's status
// unless a service sent another status of the same class). Internal details
// go in the wrapped error, which is never sent over the wire.
type Error struct {
	code    Code
	status  int
	message string
	wrapped error
}

// NewError returns an error with the given code and caller-safe message.
func NewError(code Code, message string) *Error {
	if !code.Valid() {
		code = CodeInternal
	}
	return &Error{code: code, status: code.HTTPStatus(), message: message}
}

// Errorf is [NewError] with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return NewError(code, fmt.Sprintf(format, args...))
}

// WrapError returns an error with the given code and caller-safe message
// that wraps cause. The cause is kept for errors.Is/As and logs and is
// never sent to the caller.
func WrapError(code Code, message string, cause error) *Error {
	e := NewError(code, message)
	e.wrapped = cause
	return e
}

// ErrorWithStatus returns an error that answers with an exact HTTP status
// from 400 to 599 (say 418), with the code of that status or of its class.
// A status outside 400-599 becomes 500.
func ErrorWithStatus(status int, message string) *Error {
	code, ok := CodeForStatus(status)
	if !ok {
		code, status = CodeInternal, 500
	}
	return &Error{code: code, status: status, message: message}
}

// Code returns the error's code.
func (e *Error) Code() Code { return e.code }

// Message returns the caller-safe message.
func (e *Error) Message() string { return e.message }

// HTTPStatus returns the status the gateway answers with.
func (e *Error) HTTPStatus() int { return e.status }

// Error implements error; it never includes the wrapped cause's text, so it
// stays safe to show.
func (e *Error) Error() string {
	if e.message == "" {
		return string(e.code)
	}
	return string(e.code) + ": " + e.message
}

// Unwrap returns the wrapped cause, if any.
func (e *Error) Unwrap() error { return e.wrapped }

// CodeOf returns the code of err: the code of the first *Error in its chain,
// deadline_exceeded or canceled for the context errors, internal for any
// other non-nil error, and "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	}
	return CodeInternal
}

// AsError returns err as an *Error: the first *Error in its chain, or a new
// one with [CodeOf] err and a generic message (the text of an error that is
// not an *Error may hold internals and is never shown).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	code := CodeOf(err)
	return WrapError(code, DefaultMessage(code), err)
}

// DefaultMessage is the generic message for a code, used when there is no
// caller-safe message.
func DefaultMessage(c Code) string {
	switch c {
	case CodeInvalidArgument:
		return "invalid request"
	case CodeUnauthenticated:
		return "authentication required"
	case CodePermissionDenied:
		return "permission denied"
	case CodeNotFound:
		return "no such function"
	case CodeTooLarge:
		return "request body too large"
	case CodeResourceExhausted:
		return "too many calls in flight, try again"
	case CodeCanceled:
		return "call canceled"
	case CodeBadReply:
		return "malformed reply from service"
	case CodeUnavailable:
		return "service unavailable"
	case CodeDeadlineExceeded:
		return "deadline exceeded"
	case CodeLoopDetected:
		return "too many nested calls: the hop limit was reached"
	}
	return "internal error"
}

// SetHeaders marks msg as an error reply for e: the one place codes map to
// the Nats-Service-Error headers.
func (e *Error) SetHeaders(h nats.Header) {
	h.Set(HeaderServiceError, e.message)
	h.Set(HeaderServiceErrorCode, strconv.Itoa(e.status))
}

// ErrorFromHeaders returns the error an error reply carries, or nil when h
// does not mark an error reply. A reply that marks an error with a missing
// or invalid status yields a [CodeBadReply] error.
func ErrorFromHeaders(h nats.Header) *Error {
	if h == nil {
		return nil
	}
	msgs, hasMsg := h[HeaderServiceError]
	codes, hasCode := h[HeaderServiceErrorCode]
	if !hasMsg && !hasCode {
		return nil
	}
	var msg string
	if len(msgs) > 0 {
		msg = msgs[0]
	}
	if len(codes) == 0 {
		return WrapError(CodeBadReply, DefaultMessage(CodeBadReply), errors.New("error reply without "+HeaderServiceErrorCode))
	}
	status, err := strconv.Atoi(codes[0])
	if err != nil || status < 400 || status > 599 {
		return WrapError(CodeBadReply, DefaultMessage(CodeBadReply), fmt.Errorf("error reply with %s %q", HeaderServiceErrorCode, codes[0]))
	}
	e := ErrorWithStatus(status, msg)
	if e.message == "" {
		e.message = DefaultMessage(e.code)
	}
	return e
}
