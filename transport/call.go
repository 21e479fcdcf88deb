package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultCallPrefix is the first token of every call-route subject unless a
// deployment configures another one. It must not overlap the function
// prefix (see [ValidateCallPrefix]).
const DefaultCallPrefix = "call"

// HeaderHops carries how many routed calls led to this one: absent or 0
// for a call from the gateway, 1 for a call a function made, and so on.
// A function passes on the value it received; the router adds one and
// refuses a call past its hop limit with [CodeLoopDetected] (508).
const HeaderHops = "Mesh-Hops"

// MaxHopsValue bounds the Mesh-Hops value a parser accepts.
const MaxHopsValue = 255

// CallSubject returns the call-route subject on which a function of
// service caller calls service.function:
//
//	<callPrefix>.<caller>.<service>.<function>
//
// With per-service credentials a service may publish only under
// <callPrefix>.<its own name>.>, so the subject proves which service made
// the call. The names are checked; the prefix is trusted.
func CallSubject(callPrefix, caller, service, function string) (string, error) {
	if err := ValidateName(caller); err != nil {
		return "", fmt.Errorf("caller: %w", err)
	}
	subj, err := Subject(callPrefix+"."+caller, service, function)
	if err != nil {
		return "", err
	}
	return subj, nil
}

// SplitCallSubject is the inverse of [CallSubject]: it returns the calling
// service and the service and function called, and false for any other
// subject.
func SplitCallSubject(callPrefix, subject string) (caller, service, function string, ok bool) {
	rest, ok := strings.CutPrefix(subject, callPrefix+".")
	if !ok {
		return "", "", "", false
	}
	caller, rest, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", "", false
	}
	service, function, ok = strings.Cut(rest, ".")
	if !ok || ValidateName(caller) != nil || ValidateName(service) != nil || ValidateName(function) != nil {
		return "", "", "", false
	}
	return caller, service, function, true
}

// ValidateCallPrefix reports whether callPrefix may be used as the call
// route's prefix beside the function prefix fnPrefix: a valid prefix
// whose subjects can never be function subjects and the other way round,
// so that no service's permission to take its own calls
// (<fnPrefix>.<service>.>) covers a call route, whatever the service is
// called.
func ValidateCallPrefix(callPrefix, fnPrefix string) error {
	if err := ValidatePrefix(callPrefix); err != nil {
		return err
	}
	a, b := strings.Split(callPrefix, "."), strings.Split(fnPrefix, ".")
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return nil
		}
	}
	return fmt.Errorf("transport: call prefix %q overlaps the function prefix %q: one starts with the other", callPrefix, fnPrefix)
}

// InboxPrefix returns the reply inbox prefix of a service: _INBOX_<service>.
// With per-service credentials only that service (and the host) may
// subscribe under it, and a router sends the answer of a routed call only
// to a reply subject under the calling service's own inbox prefix.
func InboxPrefix(service string) string { return "_INBOX_" + service }

// ParseHops decodes a Mesh-Hops header value: decimal, 0 to
// [MaxHopsValue].
func ParseHops(s string) (int, error) {
	if s == "" || len(s) > 3 {
		return 0, errors.New("transport: hops: want 0 to 255")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("transport: hops %q: want 0 to 255", s)
		}
	}
	n, _ := strconv.Atoi(s) // three digits at most: cannot fail
	if n > MaxHopsValue {
		return 0, fmt.Errorf("transport: hops %q: want 0 to 255", s)
	}
	return n, nil
}
