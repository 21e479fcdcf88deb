package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// errParamsDepth is wrapped by decodeParams when params nest deeper than
// MaxParamsDepth.
var errParamsDepth = fmt.Errorf("authz: params nest deeper than %d", MaxParamsDepth)

// errParamsCase is wrapped by decodeParams when an object in params has
// two keys that differ only in letter case.
var errParamsCase = errors.New("authz: params: keys that differ only in letter case")

// decodeParams decodes a JSON document for input.params. Numbers keep
// their text (json.Number, then ast.Number, which is the JSON literal), so
// a number too large or too precise for a float64 loses nothing; a number
// beyond the bounds of numberOK is an error; arrays and objects may nest
// at most MaxParamsDepth deep; a duplicate key keeps its last value, as
// encoding/json does; two keys of one object that differ only in letter
// case are an error (see caseCollision); anything but whitespace after
// the document is an error. With lazy, an object is converted to OPA's values only as the
// policy reads it (see goValue).
func decodeParams(data []byte, lazy bool) (ast.Value, error) {
	if err := checkDepth(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("authz: params: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("authz: params: data after the JSON value")
	}
	if !plainJSON(v, 0) {
		return nil, errors.New("authz: params: a number out of range")
	}
	if a, b, ok := caseCollision(v); ok {
		return nil, fmt.Errorf("%w: %q and %q", errParamsCase, a, b)
	}
	return goValue(v, lazy)
}

// checkDepth reports nesting deeper than MaxParamsDepth, before the
// decoder (whose own limit is far higher) spends any work on it. Brackets
// inside strings do not count.
func checkDepth(data []byte) error {
	depth := 0
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > MaxParamsDepth {
				return errParamsDepth
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// caseCollision returns two keys of one object in x that differ but are
// equal under case folding. encoding/json matches keys to struct fields
// that way, the last match winning, while the policy sees the keys apart:
// {"amount": 5, "AMOUNT": 5000} would show the policy 5 and a Go function
// decoding into a struct 5000.
func caseCollision(x any) (string, string, bool) {
	switch x := x.(type) {
	case []any:
		for _, e := range x {
			if a, b, ok := caseCollision(e); ok {
				return a, b, true
			}
		}
	case map[string]any:
		if len(x) > 1 && len(x) <= 16 {
			// Pairwise, without allocating, for the usual small object.
			for k1 := range x {
				for k2 := range x {
					if k1 < k2 && strings.EqualFold(k1, k2) {
						return k1, k2, true
					}
				}
			}
		} else if len(x) > 16 {
			seen := make(map[string]string, len(x))
			for k := range x {
				f := foldName(k)
				if other, dup := seen[f]; dup {
					return other, k, true
				}
				seen[f] = k
			}
		}
		for _, e := range x {
			if a, b, ok := caseCollision(e); ok {
				return a, b, true
			}
		}
	}
	return "", "", false
}

// foldName folds s the way encoding/json does to match keys to fields:
// foldName(x) == foldName(y) exactly when strings.EqualFold(x, y), which
// is what encoding/json's own folding promises.
func foldName(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s)
	}
	var b strings.Builder
	for _, r := range s {
		for {
			// The smallest rune of r's fold set.
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b.WriteRune(r)
	}
	return b.String()
}
