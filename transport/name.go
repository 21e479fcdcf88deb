package transport

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the first token of every function subject unless a
// deployment configures another prefix.
const DefaultPrefix = "fn"

// QueueGroup is the NATS queue group every instance of every service
// subscribes in, so that NATS delivers each call to one instance.
const QueueGroup = "q"

// MaxNameLen is the longest service or function name.
const MaxNameLen = 64

// ErrInvalidName is what every error [ValidateName] returns is (errors.Is).
var ErrInvalidName = errors.New("transport: invalid name")

// NameError is the error [ValidateName] returns: Reason says what is
// wrong with the name, safe to show to a caller (it never quotes the
// name).
type NameError struct {
	Reason string
}

func (e *NameError) Error() string { return ErrInvalidName.Error() + ": " + e.Reason }

// Is reports whether target is ErrInvalidName.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

// ValidateName reports whether s may be used as a service or function name:
// 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'. The error is a
// [*NameError] that says what is wrong with s.
func ValidateName(s string) error {
	if s == "" {
		return &NameError{Reason: "empty"}
	}
	if len(s) > MaxNameLen {
		return &NameError{Reason: fmt.Sprintf("%d bytes, at most %d", len(s), MaxNameLen)}
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return &NameError{Reason: fmt.Sprintf("byte %#x at %d is not one of A-Z a-z 0-9 _ -", s[i], i)}
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidatePrefix reports whether p may be used as a subject prefix: one or
// more dot-separated tokens, each a valid name.
func ValidatePrefix(p string) error {
	for _, tok := range strings.Split(p, ".") {
		if err := ValidateName(tok); err != nil {
			return fmt.Errorf("transport: prefix %q: %w", p, err)
		}
	}
	return nil
}

// Subject returns the subject of a function, prefix.service.function, after
// checking both names. The prefix is trusted (see [ValidatePrefix]).
func Subject(prefix, service, function string) (string, error) {
	if err := ValidateName(service); err != nil {
		return "", fmt.Errorf("service: %w", err)
	}
	if err := ValidateName(function); err != nil {
		return "", fmt.Errorf("function: %w", err)
	}
	return prefix + "." + service + "." + function, nil
}

// SplitSubject is the inverse of [Subject]: it returns the service and
// function of a function subject under prefix, and false for any other
// subject.
func SplitSubject(prefix, subject string) (service, function string, ok bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", "", false
	}
	service, function, ok = strings.Cut(rest, ".")
	if !ok || ValidateName(service) != nil || ValidateName(function) != nil {
		return "", "", false
	}
	return service, function, true
}
