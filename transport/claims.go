package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// MaxClaimsLen bounds the Mesh-Auth header a service will decode.
const MaxClaimsLen = 64 << 10

// DecodeClaims decodes a Mesh-Auth header value: a JSON object of the
// caller's verified claims. An empty value means an anonymous caller and
// returns nil claims and no error.
func DecodeClaims(s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxClaimsLen {
		return nil, fmt.Errorf("transport: claims: %d bytes, at most %d", len(s), MaxClaimsLen)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("transport: claims: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("transport: claims: not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("transport: claims: trailing data after the object")
	}
	return m, nil
}
