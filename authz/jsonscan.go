package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The params a policy reads are decoded from the body in two steps, so
// that the memory a call takes stays a small multiple of its body
// whatever the body holds (1 MiB of [{},{},…] decoded whole into Go and
// then OPA values took about 73 MiB):
//
//  1. scanJSON checks the whole document as decodeParams always has
//     (JSON syntax, nesting depth, number bounds, keys that differ only in
//     letter case) without building anything;
//  2. pickParams decodes only the parts the policy reads: for a policy
//     that reads input.params.amount and input.params.user, an object with
//     those two keys. A part read whole (input.params.items passed to
//     count, say) is decoded whole, and so are params read whole (input
//     .params as a value, a computed key), as long as that takes at most
//     maxDecodeFactor times the part's size (or decodeSlack).
//
// The policy cannot tell the difference: every reference it makes below
// input.params finds the same value, or finds nothing where there was
// nothing (a key below a number, say).

// maxDecodeFactor and decodeSlack bound the memory a part of params read
// whole may take once decoded, estimated by decodeCost: at most
// maxDecodeFactor × its size + decodeSlack, else errParamsCost.
const (
	maxDecodeFactor = 32
	decodeSlack     = 64 << 10
)

// What decoding into Go values and converting them to OPA's allocates,
// measured by TestDecodeCostEstimate and rounded up: per object or array,
// per key, per other value, and per byte of a string, key or number.
const (
	costContainer = 800
	costKey       = 480
	costScalar    = 160
	costByte      = 4
)

// errParamsCost is wrapped when params read whole would take too much
// memory to decode.
var errParamsCost = errors.New("authz: params too large to decode for the policy")

// jsonScan walks a JSON document that json.Valid accepted.
type jsonScan struct {
	data []byte
	i    int
	cost int64 // decodeCost of what was walked
	err  error

	// keys holds the keys of the objects being walked, outer objects'
	// first, for the letter-case check; an object's keys are dropped
	// when it ends.
	keys [][]byte
}

// scanJSON checks data as decodeParams does and returns the cost of
// decoding it whole.
func scanJSON(data []byte) (int64, error) {
	if err := checkDepth(data); err != nil {
		return 0, err
	}
	if !json.Valid(data) {
		// For the message: encoding/json says what is wrong and where.
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return 0, fmt.Errorf("authz: params: %w", err)
	}
	s := jsonScan{data: data}
	s.value()
	return s.cost, s.err
}

func (s *jsonScan) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value walks one value and the blanks around it.
func (s *jsonScan) value() {
	s.ws()
	if s.err != nil || s.i >= len(s.data) {
		return
	}
	switch c := s.data[s.i]; {
	case c == '{':
		s.object(nil)
	case c == '[':
		s.cost += costContainer
		s.i++
		s.ws()
		if s.data[s.i] == ']' {
			s.i++
			break
		}
		for s.err == nil {
			s.value()
			c := s.data[s.i]
			s.i++
			if c == ']' {
				break
			}
		}
	case c == '"':
		raw := s.str()
		s.cost += costScalar + costByte*int64(len(raw))
	case c == 't':
		s.i += 4
		s.cost += costScalar
	case c == 'f':
		s.i += 5
		s.cost += costScalar
	case c == 'n':
		s.i += 4
		s.cost += costScalar
	default:
		start := s.i
		for s.i < len(s.data) && isNumberByte(s.data[s.i]) {
			s.i++
		}
		if !numberOK(s.data[start:s.i]) {
			s.err = errors.New("authz: params: a number out of range")
		}
		s.cost += costScalar + costByte*int64(s.i-start)
	}
	s.ws()
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str walks a string and returns its bytes between the quotes, escapes
// as written.
func (s *jsonScan) str() []byte {
	start := s.i + 1
	for s.i = start; s.data[s.i] != '"'; s.i++ {
		if s.data[s.i] == '\\' {
			s.i++
		}
	}
	s.i++
	return s.data[start : s.i-1]
}

// member is one key of an object and where its value is.
type member struct {
	key        string
	start, end int
}

// object walks an object, checking that no two of its keys differ only
// in letter case. With pick not nil, it reports each key and its value's
// span to pick.
func (s *jsonScan) object(pick func(member)) {
	s.cost += costContainer
	s.i++ // {
	base := len(s.keys)
	var folded map[string]string // for objects of more than 16 keys
	for s.err == nil {
		s.ws()
		if s.data[s.i] == '}' {
			break
		}
		raw := s.str()
		key := raw
		if bytes.IndexByte(raw, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(s.data[s.i-len(raw)-2:s.i], &k); err != nil {
				s.err = fmt.Errorf("authz: params: %w", err)
				return
			}
			key = []byte(k)
		}
		s.cost += costKey + costByte*int64(len(key))
		if err := s.collides(key, base, &folded); err != nil {
			s.err = err
			return
		}
		s.ws()
		s.i++ // :
		s.ws()
		start := s.i
		s.value()
		if pick != nil {
			end := s.i
			for end > start && isBlank(s.data[end-1]) {
				end--
			}
			pick(member{key: string(key), start: start, end: end})
		}
		if s.data[s.i] == '}' {
			break
		}
		s.i++ // ,
	}
	s.i++ // }
	s.keys = s.keys[:base]
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// collides adds key to an object's keys and reports a key before it that
// differs from it only in letter case: pairwise for the first 16 keys,
// through a map of folded keys beyond. encoding/json matches keys to
// struct fields that way, the last match winning, while the policy sees
// the keys apart: {"amount": 5, "AMOUNT": 5000} would show the policy 5
// and a Go function decoding into a struct 5000.
func (s *jsonScan) collides(key []byte, base int, folded *map[string]string) error {
	if *folded == nil {
		keys := s.keys[base:]
		for _, k := range keys {
			if !bytes.Equal(k, key) && bytes.EqualFold(k, key) {
				return fmt.Errorf("%w: %q and %q", errParamsCase, k, key)
			}
		}
		if len(keys) < 16 {
			s.keys = append(s.keys, key)
			return nil
		}
		*folded = make(map[string]string, 32)
		for _, k := range keys {
			(*folded)[foldName(string(k))] = string(k)
		}
	}
	f := foldName(string(key))
	if other, ok := (*folded)[f]; ok && other != string(key) {
		return fmt.Errorf("%w: %q and %q", errParamsCase, other, key)
	}
	(*folded)[f] = string(key)
	return nil
}

// readTree is what a policy reads of a value: whole, or the keys below
// it that it reads.
type readTree struct {
	whole bool
	keys  map[string]*readTree
}

func newReadTree(whole bool, paths [][]string) *readTree {
	t := &readTree{whole: whole}
	if whole {
		return t
	}
	for _, p := range paths {
		n := t
		for i, k := range p {
			if n.keys == nil {
				n.keys = map[string]*readTree{}
			}
			next := n.keys[k]
			if next == nil {
				next = &readTree{whole: i == len(p)-1}
				n.keys[k] = next
			}
			n = next
		}
	}
	return t
}

// pickParams decodes what t reads of the document data, which scanJSON
// accepted: the whole of it, or an object of the keys t reads that data
// has, each decoded as t reads it. A value that is not an object where t
// reads keys below it is null: every reference below it is undefined,
// as it would be for the value itself.
func pickParams(data []byte, t *readTree) (any, error) {
	if t.whole {
		if v, ok := scalar(data); ok {
			return v, nil
		}
		s := jsonScan{data: data}
		s.value()
		if limit := maxDecodeFactor*int64(len(data)) + decodeSlack; s.cost > limit {
			return nil, fmt.Errorf("%w: about %d bytes, more than %d", errParamsCost, s.cost, limit)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("authz: params: %w", err)
		}
		return v, nil
	}
	s := jsonScan{data: data}
	s.ws()
	if s.i >= len(data) || data[s.i] != '{' {
		return nil, nil
	}
	var small [4]member
	found := small[:0]
	s.object(func(m member) {
		if t.keys[m.key] == nil {
			return
		}
		for i := range found {
			if found[i].key == m.key {
				found[i] = m // the last of duplicate keys, as encoding/json
				return
			}
		}
		found = append(found, m)
	})
	if s.err != nil {
		return nil, s.err
	}
	obj := make(map[string]any, len(found))
	for _, m := range found {
		v, err := pickParams(data[m.start:m.end], t.keys[m.key])
		if err != nil {
			return nil, err
		}
		obj[m.key] = v
	}
	return obj, nil
}

// scalar decodes a JSON value that scanJSON accepted when it is not an
// array or object, as encoding/json with UseNumber would; ok is false for
// containers and strings with escapes.
func scalar(data []byte) (v any, ok bool) {
	data = bytes.Trim(data, " \t\r\n")
	switch data[0] {
	case '{', '[':
		return nil, false
	case '"':
		body := data[1 : len(data)-1]
		for _, c := range body {
			if c == '\\' || c >= 0x80 {
				return nil, false // escapes and UTF-8 checks: encoding/json
			}
		}
		return string(body), true
	case 't':
		return true, true
	case 'f':
		return false, true
	case 'n':
		return nil, true
	}
	return json.Number(data), true
}
