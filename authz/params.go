package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/open-policy-agent/opa/v1/ast"
)

// errParamsDepth is wrapped by decodeParams when params nest deeper than
// MaxParamsDepth.
var errParamsDepth = fmt.Errorf("authz: params nest deeper than %d", MaxParamsDepth)

// decodeParams decodes a JSON document for input.params. Numbers keep
// their text (json.Number, then ast.Number, which is the JSON literal), so
// a number too large or too precise for a float64 loses nothing; a number
// beyond the bounds of numberOK is an error; arrays and objects may nest
// at most MaxParamsDepth deep; a duplicate key keeps its last value, as
// encoding/json does; anything but whitespace after the document is an
// error. With lazy, an object is converted to OPA's values only as the
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
