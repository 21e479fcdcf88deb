package authz

import (
	"errors"
	"fmt"
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

// decodeParams decodes a JSON document for input.params, as much of it
// as t reads (see pickParams). The whole document is checked first:
// numbers keep their text (json.Number, then ast.Number, which is the
// JSON literal), so a number too large or too precise for a float64
// loses nothing; a number beyond the bounds of numberOK is an error;
// arrays and objects may nest at most MaxParamsDepth deep; a duplicate
// key keeps its last value, as encoding/json does; two keys of one object
// that differ only in letter case are an error (see jsonScan.collides);
// anything but whitespace after the document is an error. With lazy, an
// object is converted to OPA's values only as the policy reads it (see
// goValue).
func decodeParams(data []byte, t *readTree, lazy bool) (ast.Value, error) {
	v, err := checkPick(data, t)
	if err != nil {
		return nil, err
	}
	return goValue(v, lazy)
}

// checkDepth reports nesting deeper than MaxParamsDepth anywhere in
// data, valid JSON or not (see checkError). Brackets inside strings do
// not count.
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
