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
func decodeJSONObject(b []byte) (map[string]any, error) {
	d := jsonDecoder{b: b}
	d.skipSpace()
	if d.i >= len(b) || b[d.i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.i != len(b) {
		return nil, errors.New("data after the object")
	}
	return v.(map[string]any), nil
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

var errJSONSyntax = errors.New("invalid JSON")

type jsonDecoder struct {
	b []byte
	i int
}

func (d *jsonDecoder) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value decodes the value at d.i, which is not whitespace.
func (d *jsonDecoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, errJSONSyntax
	}
	switch c := d.b[d.i]; {
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
		return d.string()
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
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
	m := make(map[string]any)
	d.skipSpace()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, errJSONSyntax
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, errJSONSyntax
		}
		d.i++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.i >= len(d.b) {
			return nil, errJSONSyntax
		}
		switch d.b[d.i] {
		case ',':
			d.i++
			d.skipSpace()
		case '}':
			d.i++
			return m, nil
		default:
			return nil, errJSONSyntax
		}
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.i++ // [
	a := []any{}
	d.skipSpace()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.i >= len(d.b) {
			return nil, errJSONSyntax
		}
		switch d.b[d.i] {
		case ',':
			d.i++
			d.skipSpace()
		case ']':
			d.i++
			return a, nil
		default:
			return nil, errJSONSyntax
		}
	}
}

// string decodes the string at d.i. Strings without escapes are copied as
// they are; the rare ones with escapes or invalid UTF-8 go to
// encoding/json, so that they decode exactly as it decodes them.
func (d *jsonDecoder) string() (string, error) {
	start := d.i
	d.i++ // "
	plain := true
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			if s := d.b[start+1 : d.i-1]; plain && utf8.Valid(s) {
				return string(s), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:d.i], &s); err != nil {
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
func (d *jsonDecoder) number() (any, error) {
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case d.i < len(d.b) && '1' <= d.b[d.i] && d.b[d.i] <= '9':
		d.digits()
	default:
		return nil, errJSONSyntax
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, errJSONSyntax
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, errJSONSyntax
		}
	}
	return json.Number(d.b[start:d.i]), nil
}

func (d *jsonDecoder) digits() int {
	n := 0
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return errJSONSyntax
	}
	d.i += len(lit)
	return nil
}
