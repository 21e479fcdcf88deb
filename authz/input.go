package authz

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/funcmesh/funcmesh/transport"
)

// Input is what a decision is about; the policy sees it as the input
// document
//
//	{
//	  "service":  "payments",
//	  "function": "charge",
//	  "params":   {"amount": 5},
//	  "auth":     {"sub": "u1", "role": "admin"},
//	  "caller":   null,
//	  "http":     {"method": "POST", "path": "/fn/payments/charge", "headers": {"x-tenant": "t1"}},
//	  "token":    "eyJhbGciOi…"
//	}
//
// auth is null for an anonymous caller, caller is null unless a function
// makes the call, http is null outside an HTTP request, and token is
// absent unless the caller sent a bearer token. Only the parts
// the loaded policy refers to are built; in particular params is decoded
// only when the policy refers to input.params.
type Input struct {
	// Service and Function name the function called; both must be valid
	// names (see transport.ValidateName).
	Service  string
	Function string

	// Params is the call's params: a value as decoded by encoding/json
	// (numbers as float64 or json.Number), or json.RawMessage holding the
	// JSON itself. nil is null.
	Params any

	// Auth holds the caller's verified claims; nil means anonymous.
	Auth map[string]any

	// Caller is the function making the call, nil for an outside caller.
	Caller *transport.Caller

	// HTTP describes the HTTP request, nil when there is none.
	HTTP *HTTPInput

	// Token is the caller's raw bearer token, "" for none (input.token is
	// then absent). The middleware takes it from the context
	// ([reqctx.Token]) when the policy reads it.
	Token string
}

// HTTPInput is input.http: the method, the URL path and the request
// headers the Authorizer was told to pass on (see [WithHeaders]), keyed by
// lower-case name.
type HTTPInput struct {
	Method  string
	Path    string
	Headers map[string]string
}

// value builds the input document for in, with the parts u names.
// params is input.params as Go values (see goParams).
//
// The document is a lazy object over a Go map: OPA converts a part to its
// own values only when the policy reads it, and the claims stay a lazy
// object of their own (see goValue), so a policy that only checks that
// there are claims converts none of them. A policy that may change the
// input in place (u.eager) gets ordinary objects instead.
func (in *Input) value(u inputUses, params any) (ast.Value, error) {
	m := make(map[string]any, 6)
	if u.has("service") {
		m["service"] = in.Service
	}
	if u.has("function") {
		m["function"] = in.Function
	}
	if u.has("params") {
		v, err := goValue(params, !u.eager)
		if err != nil {
			return nil, fmt.Errorf("authz: params: %w", err)
		}
		m["params"] = v
	}
	if u.has("auth") {
		var auth any // null
		if in.Auth != nil {
			v, err := goValue(in.Auth, !u.eager)
			if err != nil {
				return nil, fmt.Errorf("authz: claims: %w", err)
			}
			auth = v
		}
		m["auth"] = auth
	}
	if u.has("caller") {
		m["caller"] = in.callerValue()
	}
	if u.has("http") {
		m["http"] = in.httpValue()
	}
	if u.has("token") && in.Token != "" {
		m["token"] = in.Token
	}
	if u.eager {
		return ast.InterfaceToValue(m)
	}
	return ast.LazyObject(m), nil
}

func (in *Input) callerValue() any {
	if c := in.Caller; c != nil {
		return map[string]any{"service": c.Service, "function": c.Function}
	}
	return nil
}

func (in *Input) httpValue() any {
	if in.HTTP == nil {
		return nil
	}
	hs := in.HTTP.Headers
	if hs == nil {
		hs = map[string]string{}
	}
	return map[string]any{"method": in.HTTP.Method, "path": in.HTTP.Path, "headers": hs}
}

// goParams returns Input.Params as Go values: JSON decoded as far as t
// reads it (see decodeParams), anything else as it is.
func goParams(p any, t *readTree) (any, error) {
	if raw, ok := p.(json.RawMessage); ok {
		if len(raw) == 0 {
			return nil, nil
		}
		return checkPick(raw, t)
	}
	return p, nil
}

// keyValues appends to buf the values of in at paths, for a cache key:
// undefined where a path has no value, and the name of its type where
// only that is read (see typeName). ok is false when a value is not one
// the cache can key on (see keyable).
//
// The claims and params must be plain JSON values as a whole, not only
// at the paths: a value the input document cannot hold is an error, which
// no cached decision may hide.
func (in *Input) keyValues(paths []keyPath, params any, buf []any) (_ []any, ok bool) {
	var checkedParams, checkedAuth bool
	for _, kp := range paths {
		p := kp.path
		switch {
		case p[0] == "params" && !checkedParams:
			if !plainJSON(params, 0) {
				return buf, false
			}
			checkedParams = true
		case p[0] == "auth" && !checkedAuth:
			if in.Auth != nil && !plainJSON(in.Auth, 0) {
				return buf, false
			}
			checkedAuth = true
		}
		var v any
		rest := p[1:]
		switch p[0] {
		case "service":
			v = in.Service
		case "function":
			v = in.Function
		case "params":
			v = params
		case "auth":
			if in.Auth != nil {
				v = in.Auth
			}
		case "caller":
			if c := in.Caller; c != nil && len(rest) == 1 && (rest[0] == "service" || rest[0] == "function") {
				v = c.Service
				if rest[0] == "function" {
					v = c.Function
				}
				rest = nil
			} else {
				v = in.callerValue()
			}
		case "http":
			v = in.httpValue()
		case "token":
			v = undefined
			if in.Token != "" {
				v = in.Token
			}
		default:
			v = undefined
		}
		for _, k := range rest {
			switch x := v.(type) {
			case map[string]any:
				e, found := x[k]
				if !found {
					e = undefined
				}
				v = e
			case map[string]string:
				e, found := x[k]
				if !found {
					v = undefined
				} else {
					v = e
				}
			case nil, bool, string, float64, json.Number, []any, undefinedValue, int, int64, int32, uint64, uint32:
				v = undefined // a key below a value that is not an object
			default:
				return buf, false
			}
		}
		if kp.typ {
			if v, ok = typeName(v); !ok {
				return buf, false
			}
		} else if !keyable(v) {
			return buf, false
		}
		buf = append(buf, v)
	}
	return buf, true
}

// typeName is the name of the type of a value the input document holds,
// as type_name answers it, or "undefined" (a string held in an interface,
// for keyValues). ok is false for a value of a Go type that is not
// keyable.
func typeName(v any) (_ any, ok bool) {
	switch v.(type) {
	case nil:
		return "null", true
	case bool:
		return "boolean", true
	case string:
		return "string", true
	case float64, json.Number, int, int64, int32, uint64, uint32:
		return "number", true
	case []any:
		return "array", true
	case map[string]any, map[string]string:
		return "object", true
	case undefinedValue:
		return "undefined", true
	}
	return nil, false
}

// goValue converts a Go value to OPA's. With lazy, an object of plain
// JSON values (as encoding/json decodes them) becomes a lazy object that
// converts a key's value only when the policy reads it: a policy that
// checks one claim does not pay for all of them. Anything else is
// converted at once.
func goValue(x any, lazy bool) (ast.Value, error) {
	if m, ok := x.(map[string]any); ok && lazy && plainJSON(m, 0) {
		return ast.LazyObject(m), nil
	}
	v, err := ast.InterfaceToValue(x)
	if err != nil {
		return nil, err
	}
	var bad ast.Number
	ast.WalkTerms(v, func(t *ast.Term) bool {
		if n, ok := t.Value.(ast.Number); ok && !numberOK(string(n)) {
			bad = n
		}
		return bad != ""
	})
	if bad != "" {
		return nil, fmt.Errorf("number %.20s… out of range", bad)
	}
	return v, nil
}

// plainJSON reports whether x holds only values a lazy object converts
// without fail: nil, bools, strings, finite float64s, ints, json.Numbers
// within numberOK's bounds, and []any and map[string]any of those, at
// most MaxParamsDepth deep.
func plainJSON(x any, depth int) bool {
	if depth > MaxParamsDepth {
		return false
	}
	switch x := x.(type) {
	case nil, bool, string, int, int64, uint64:
		return true
	case float64:
		return !math.IsNaN(x) && !math.IsInf(x, 0)
	case json.Number:
		return numberOK(string(x))
	case []any:
		for _, e := range x {
			if !plainJSON(e, depth+1) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range x {
			if !plainJSON(e, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// Bounds on the numbers a policy is given. OPA compares numbers exactly,
// with math/big, and fails (panics) on exponents beyond what a big.Float
// holds; a long literal or a large exponent would also make every
// comparison slow. Anything within these bounds keeps every digit.
const (
	maxNumberLen      = 100  // characters of a number's literal
	maxNumberExponent = 1000 // decimal exponent, either way
)

// numberOK reports whether s is a JSON number within the bounds above.
func numberOK[T ~string | ~[]byte](s T) bool {
	if len(s) > maxNumberLen || !isJSONNumber(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != 'e' && s[i] != 'E' {
			continue
		}
		i++
		if s[i] == '+' || s[i] == '-' {
			i++
		}
		e := 0
		for ; i < len(s); i++ {
			if e = e*10 + int(s[i]-'0'); e > maxNumberExponent {
				return false
			}
		}
	}
	return true
}

// isJSONNumber reports whether s is a number in JSON's syntax.
func isJSONNumber[T ~string | ~[]byte](s T) bool {
	i := 0
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if !digits() {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}
