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

// decodeParams decodes a JSON document straight to an OPA value, without
// a map[string]any in between. Numbers keep their text (ast.Number is the
// JSON literal), so a number too large or too precise for a float64 loses
// nothing; a number beyond the bounds of numberOK is an error; arrays and objects may nest at most MaxParamsDepth deep; a
// duplicate key keeps its last value, as encoding/json does; anything but
// whitespace after the document is an error.
func decodeParams(data []byte) (ast.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("authz: params: data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (ast.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("authz: params: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxParamsDepth {
			return nil, errParamsDepth
		}
		switch t {
		case '{':
			obj := ast.NewObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("authz: params: %w", err)
				}
				k, ok := kt.(string)
				if !ok { // unreachable: json.Decoder checks that keys are strings
					return nil, errors.New("authz: params: object key is not a string")
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj.Insert(ast.StringTerm(k), ast.NewTerm(v))
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, fmt.Errorf("authz: params: %w", err)
			}
			return obj, nil
		case '[':
			var elems []*ast.Term
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				elems = append(elems, ast.NewTerm(v))
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, fmt.Errorf("authz: params: %w", err)
			}
			return ast.NewArray(elems...), nil
		}
		return nil, fmt.Errorf("authz: params: unexpected %v", t)
	case string:
		return ast.String(t), nil
	case json.Number:
		if !numberOK(string(t)) {
			return nil, fmt.Errorf("authz: params: number %.20s… out of range", t)
		}
		return ast.Number(t), nil
	case bool:
		return ast.Boolean(t), nil
	case nil:
		return ast.Null{}, nil
	}
	return nil, fmt.Errorf("authz: params: unexpected token %v", tok)
}
