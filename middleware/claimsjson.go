package middleware

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// decodeJSONObject decodes b, which must be one JSON object and nothing
// else but whitespace, into a map, as encoding/json's Decoder with
// UseNumber would: numbers become json.Number, arrays []any, objects
// map[string]any, a repeated key keeps its last value. It exists because
// decoding the claims is most of the cost of verifying an HMAC token, and
// encoding/json's reflection makes that several times slower than it
// need be. A fuzz test holds it to encoding/json's results on every input.
//
// b is copied into one string, and the keys, strings and numbers of the
// result are pieces of it (but for strings with escapes), which saves an
// allocation for each.
func decodeJSONObject(b []byte) (map[string]any, error) {
	m, _, err := decodeClaims(b)
	return m, err
}

// decodeClaims is decodeJSONObject, and also returns an estimate of the
// memory the result takes, which errs on the large side (see allocSize).
func decodeClaims(b []byte) (map[string]any, int, error) {
	d := jsonDecoder{s: string(b)}
	d.skipSpace()
	if d.i >= len(d.s) || d.s[d.i] != '{' {
		return nil, 0, errors.New("not a JSON object")
	}
	v, err := d.value(0)
	if err != nil {
		return nil, 0, err
	}
	d.skipSpace()
	if d.i != len(d.s) {
		return nil, 0, errors.New("data after the object")
	}
	return v.(map[string]any), allocSize(len(d.s)) + d.size, nil
}

// jwtHeader is what the verifier reads of a token's JOSE header.
type jwtHeader struct {
	alg    string // "" when absent or not a string
	kid    string
	hasKid bool // "kid" is there,
	kidStr bool // and a string
	crit   bool // "crit" is there
}

// decodeJWTHeader reads a token's header, s, as decodeJSONObject would
// and the verifier would then look at the map: the header must be one
// JSON object; alg, kid and crit are the last values of those keys. It
// builds no map and keeps no other value.
func decodeJWTHeader(s string) (jwtHeader, error) {
	var h jwtHeader
	d := jsonDecoder{s: s, skip: true}
	d.skipSpace()
	if d.i >= len(s) || s[d.i] != '{' {
		return h, errors.New("not a JSON object")
	}
	d.i++
	d.skipSpace()
	if d.i < len(s) && s[d.i] == '}' {
		d.i++
	} else {
		for {
			if d.i >= len(s) || s[d.i] != '"' {
				return h, errJSONSyntax
			}
			k, err := d.string()
			if err != nil {
				return h, err
			}
			d.skipSpace()
			if d.i >= len(s) || s[d.i] != ':' {
				return h, errJSONSyntax
			}
			d.i++
			d.skipSpace()
			str, isStr := "", d.i < len(s) && s[d.i] == '"'
			if isStr && (k == "alg" || k == "kid") {
				str, err = d.string()
			} else {
				_, err = d.value(1) // the members of the header object are at depth 1
			}
			if err != nil {
				return h, err
			}
			switch k {
			case "alg":
				h.alg = str
			case "kid":
				h.hasKid, h.kidStr, h.kid = true, isStr, str
			case "crit":
				h.crit = true
			}
			d.skipSpace()
			if d.i >= len(s) {
				return h, errJSONSyntax
			}
			if s[d.i] == '}' {
				d.i++
				break
			}
			if s[d.i] != ',' {
				return h, errJSONSyntax
			}
			d.i++
			d.skipSpace()
		}
	}
	d.skipSpace()
	if d.i != len(s) {
		return h, errors.New("data after the object")
	}
	return h, nil
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

var errJSONSyntax = errors.New("invalid JSON")

type jsonDecoder struct {
	s    string
	i    int
	skip bool // check the JSON only: build no maps, slices or interfaces
	size int  // estimated bytes of what it built, but for s
}

func (d *jsonDecoder) skipSpace() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value decodes the value at d.i, which is not whitespace.
func (d *jsonDecoder) value(depth int) (any, error) {
	if d.i >= len(d.s) {
		return nil, errJSONSyntax
	}
	switch c := d.s[d.i]; {
	case c == '{':
		if depth++; depth > maxJSONDepth {
			return nil, errors.New("JSON nested too deep")
		}
		return d.object(depth)
	case c == '[':
		if depth++; depth > maxJSONDepth {
			return nil, errors.New("JSON nested too deep")
		}
		return d.array(depth)
	case c == '"':
		s, err := d.string()
		if d.skip || err != nil {
			return nil, err
		}
		d.size += boxOverhead + allocSize(len(s))
		return s, nil
	case c == '-' || '0' <= c && c <= '9':
		n, err := d.number()
		if d.skip || err != nil {
			return nil, err
		}
		d.size += boxOverhead + allocSize(len(n))
		return n, nil
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, errJSONSyntax
}

func (d *jsonDecoder) object(depth int) (any, error) {
	d.i++ // {
	var m map[string]any
	if !d.skip {
		m = make(map[string]any)
	}
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		d.size += mapSize(0)
		return m, nil
	}
	for {
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, errJSONSyntax
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.size += allocSize(len(k))
		d.skipSpace()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, errJSONSyntax
		}
		d.i++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		if !d.skip {
			m[k] = v
		}
		d.skipSpace()
		if d.i >= len(d.s) {
			return nil, errJSONSyntax
		}
		switch d.s[d.i] {
		case ',':
			d.i++
			d.skipSpace()
		case '}':
			d.i++
			d.size += mapSize(len(m))
			return m, nil
		default:
			return nil, errJSONSyntax
		}
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.i++ // [
	var a []any
	if !d.skip {
		a = []any{}
	}
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		d.size += boxOverhead
		return a, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		if !d.skip {
			a = append(a, v)
		}
		d.skipSpace()
		if d.i >= len(d.s) {
			return nil, errJSONSyntax
		}
		switch d.s[d.i] {
		case ',':
			d.i++
			d.skipSpace()
		case ']':
			d.i++
			d.size += boxOverhead + allocSize(16*cap(a))
			return a, nil
		default:
			return nil, errJSONSyntax
		}
	}
}

// string decodes the string at d.i. A string without escapes is returned
// as a piece of d.s; the rare ones with escapes or invalid UTF-8 go to
// encoding/json, so that they decode exactly as it decodes them.
func (d *jsonDecoder) string() (string, error) {
	start := d.i
	d.i++ // "
	plain := true
	for d.i < len(d.s) {
		switch c := d.s[d.i]; {
		case c == '"':
			d.i++
			if s := d.s[start+1 : d.i-1]; plain && utf8.ValidString(s) {
				return s, nil
			}
			var s string
			if err := json.Unmarshal([]byte(d.s[start:d.i]), &s); err != nil {
				return "", err
			}
			return s, nil
		case c == '\\':
			plain = false
			d.i += 2
		case c < 0x20:
			return "", errJSONSyntax
		default:
			d.i++
		}
	}
	return "", errJSONSyntax
}

// number checks the JSON number grammar at d.i and returns the number as
// written.
func (d *jsonDecoder) number() (json.Number, error) {
	start := d.i
	if d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.i < len(d.s) && '1' <= d.s[d.i] && d.s[d.i] <= '9':
		d.digits()
	default:
		return "", errJSONSyntax
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return "", errJSONSyntax
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return "", errJSONSyntax
		}
	}
	return json.Number(d.s[start:d.i]), nil
}

func (d *jsonDecoder) digits() int {
	n := 0
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.s)-d.i < len(lit) || d.s[d.i:d.i+len(lit)] != lit {
		return errJSONSyntax
	}
	d.i += len(lit)
	return nil
}
