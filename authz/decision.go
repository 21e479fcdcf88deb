package authz

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/funcmesh/funcmesh/transport"
)

// Decision is the answer to one call.
type Decision struct {
	// Allow is true when the call may be made.
	Allow bool

	// Status is the HTTP status of a denial: the policy's own status when
	// it gave a 4xx one, else 403. It is 0 when the call is allowed.
	Status int

	// Reason is the policy's reason, shown to the caller with a denial;
	// "" when it gave none.
	Reason string

	// Headers are the response headers the policy asked for, after
	// filtering (see the package documentation); nil when none.
	Headers http.Header
}

// Err returns nil when d allows the call, and otherwise the error to
// answer the caller with: status d.Status, the policy's reason as the
// message (or the status's default message).
func (d Decision) Err() error {
	if d.Allow {
		return nil
	}
	status := d.Status
	if status < 400 || status > 499 {
		status = http.StatusForbidden
	}
	msg := d.Reason
	if msg == "" {
		code, _ := transport.CodeForStatus(status)
		msg = transport.DefaultMessage(code)
	}
	return transport.ErrorWithStatus(status, msg)
}

// DecisionInfo describes one decision, for the decision hook.
type DecisionInfo struct {
	Service  string
	Function string
	Allow    bool
	Status   int    // the HTTP status answered: 0 when allowed, 500 on Err
	Reason   string // the policy's reason for a denial
	Duration time.Duration
	// Err is the evaluation error that denied the call, nil otherwise. Its
	// text may hold internals: log it, never show it to a caller.
	Err error
}

// Decision keys read from an object decision.
var (
	termAllow   = ast.StringTerm("allow")
	termStatus  = ast.StringTerm("status")
	termReason  = ast.StringTerm("reason")
	termHeaders = ast.StringTerm("headers")
)

// errBadDecision is wrapped by the error for a decision of the wrong
// shape.
var errBadDecision = errors.New("bad decision")

// decisionOf reads a decision from the query's value: a boolean, or an
// object whose allow is a boolean (a missing allow denies, as an undefined
// rule does), status an integer, reason a string and headers an object of
// strings. Anything else is an error.
func decisionOf(v ast.Value, log *slog.Logger) (Decision, error) {
	switch v := v.(type) {
	case ast.Boolean:
		return boolDecision(bool(v)), nil
	case ast.Object:
		d := Decision{}
		if t := v.Get(termAllow); t != nil {
			b, ok := t.Value.(ast.Boolean)
			if !ok {
				return Decision{}, fmt.Errorf("%w: allow is %s, want a boolean", errBadDecision, ast.ValueName(t.Value))
			}
			d.Allow = bool(b)
		}
		if t := v.Get(termStatus); t != nil {
			n, ok := t.Value.(ast.Number)
			if !ok {
				return Decision{}, fmt.Errorf("%w: status is %s, want a number", errBadDecision, ast.ValueName(t.Value))
			}
			s, ok := n.Int()
			if !ok {
				return Decision{}, fmt.Errorf("%w: status %v is not an integer", errBadDecision, n)
			}
			d.Status = s
		}
		if t := v.Get(termReason); t != nil {
			s, ok := t.Value.(ast.String)
			if !ok {
				return Decision{}, fmt.Errorf("%w: reason is %s, want a string", errBadDecision, ast.ValueName(t.Value))
			}
			d.Reason = string(s)
		}
		if t := v.Get(termHeaders); t != nil {
			hs, ok := t.Value.(ast.Object)
			if !ok {
				return Decision{}, fmt.Errorf("%w: headers is %s, want an object", errBadDecision, ast.ValueName(t.Value))
			}
			var err error
			hs.Until(func(k, v *ast.Term) bool {
				name, ok1 := k.Value.(ast.String)
				val, ok2 := v.Value.(ast.String)
				if !ok1 || !ok2 {
					err = fmt.Errorf("%w: headers: %v: %v, want a string", errBadDecision, k, v)
					return true
				}
				if !allowedHeader(string(name), string(val)) {
					if log != nil {
						log.Debug("authz: dropped a response header the policy set", slog.String("header", string(name)))
					}
					return false
				}
				if d.Headers == nil {
					d.Headers = http.Header{}
				}
				d.Headers.Add(string(name), string(val))
				return false
			})
			if err != nil {
				return Decision{}, err
			}
		}
		if d.Allow {
			d.Status, d.Reason = 0, ""
		} else if d.Status < 400 || d.Status > 499 {
			d.Status = http.StatusForbidden
		}
		return d, nil
	}
	return Decision{}, fmt.Errorf("%w: %s, want a boolean or an object", errBadDecision, ast.ValueName(v))
}

func boolDecision(allow bool) Decision {
	if allow {
		return Decision{Allow: true}
	}
	return Decision{Status: http.StatusForbidden}
}

// allowedHeader reports whether a policy may set a response header:
// WWW-Authenticate, Retry-After and X-* names (but not X-Request-Id, which
// the request ID middleware owns), with values free of control characters.
// Hop-by-hop headers, Set-Cookie, Content-*, Mesh-* and the like are
// dropped, so a policy cannot change the framing or the session of a
// response.
func allowedHeader(name, value string) bool {
	if !validHeaderName(name) {
		return false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	switch n := http.CanonicalHeaderKey(name); {
	case n == "Www-Authenticate", n == "Retry-After":
		return true
	case n == transport.HeaderXRequestID:
		return false
	default:
		return strings.HasPrefix(n, "X-")
	}
}
