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
//     letter case) without building anything; checkPick does it in the
//     walk that finds the members of the object the policy reads;
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

// jsonScan walks a JSON document, checking its syntax as json.Valid
// does (FuzzDecodeParams holds the two equal), its nesting depth, its
// numbers' bounds and its keys' letter case.
type jsonScan struct {
	data  []byte
	i     int
	depth int   // of the arrays and objects being walked
	cost  int64 // decodeCost of what was walked
	err   error

	// keys holds the keys of the objects being walked, outer objects'
	// first, for the letter-case check; an object's keys are dropped
	// when it ends.
	keys [][]byte
}

// errSyntax is the error of a walk that met invalid JSON; checkError
// replaces it with encoding/json's description.
var errSyntax = errors.New("invalid JSON")

// scanJSON checks data as decodeParams does and returns the cost of
// decoding it whole.
func scanJSON(data []byte) (int64, error) {
	s := jsonScan{data: data}
	s.document()
	if s.err != nil {
		return 0, checkError(data, s.err)
	}
	return s.cost, nil
}

// document walks data as one value with blanks around it and nothing
// else.
func (s *jsonScan) document() {
	s.value()
	if s.err == nil && s.i != len(s.data) {
		s.err = errSyntax
	}
}

// checkError is the error for a document whose walk failed with err,
// ranked as the checks always have: nesting too deep first, then invalid
// JSON, with encoding/json's message saying what is wrong and where, then
// the walk's own error.
func checkError(data []byte, err error) error {
	if derr := checkDepth(data); derr != nil {
		return derr
	}
	if err == errSyntax || !json.Valid(data) {
		var v any
		uerr := json.Unmarshal(data, &v)
		if uerr == nil {
			uerr = errSyntax
		}
		return fmt.Errorf("authz: params: %w", uerr)
	}
	return err
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

// peek returns the byte at s.i, 0 at the end.
func (s *jsonScan) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

// value walks one value and the blanks around it.
func (s *jsonScan) value() {
	s.ws()
	switch c := s.peek(); {
	case c == '{':
		s.object(nil)
	case c == '[':
		s.array()
	case c == '"':
		raw := s.str()
		s.cost += costScalar + costByte*int64(len(raw))
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		for s.i < len(s.data) && isNumberByte(s.data[s.i]) {
			s.i++
		}
		// A number byte right after a number is invalid JSON anyway, so
		// taking them all and checking the grammar is json.Valid's answer.
		switch num := s.data[start:s.i]; {
		case !isJSONNumber(num):
			s.err = errSyntax
		case !numberOK(num):
			s.err = errors.New("authz: params: a number out of range")
		}
		s.cost += costScalar + costByte*int64(s.i-start)
	default:
		s.err = errSyntax
	}
	if s.err == nil {
		s.ws()
	}
}

func (s *jsonScan) literal(lit string) {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		s.err = errSyntax
		return
	}
	s.i += len(lit)
	s.cost += costScalar
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// open enters the array or object at s.i, which must not nest deeper
// than MaxParamsDepth.
func (s *jsonScan) open() bool {
	if s.depth++; s.depth > MaxParamsDepth {
		s.err = errParamsDepth
		return false
	}
	s.cost += costContainer
	s.i++
	s.ws()
	return true
}

// array walks an array.
func (s *jsonScan) array() {
	if !s.open() {
		return
	}
	if s.peek() == ']' {
		s.i++
		s.depth--
		return
	}
	for {
		s.value()
		if s.err != nil {
			return
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return
		default:
			s.err = errSyntax
			return
		}
	}
}

// str walks a string and returns its bytes between the quotes, escapes
// as written. Like json.Valid it takes any byte but control characters,
// valid UTF-8 or not.
func (s *jsonScan) str() []byte {
	start := s.i + 1
	for s.i = start; s.i < len(s.data); s.i++ {
		switch c := s.data[s.i]; {
		case c == '"':
			s.i++
			return s.data[start : s.i-1]
		case c < 0x20:
			s.err = errSyntax
			return nil
		case c == '\\':
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if s.i+4 >= len(s.data) || !isHex(s.data[s.i+1]) || !isHex(s.data[s.i+2]) || !isHex(s.data[s.i+3]) || !isHex(s.data[s.i+4]) {
					s.err = errSyntax
					return nil
				}
				s.i += 4
			default:
				s.err = errSyntax
				return nil
			}
		}
	}
	s.err = errSyntax // no closing quote
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// member is one key of an object and where its value is.
type member struct {
	key        string
	start, end int
}

// object walks an object, checking that no two of its keys differ only
// in letter case. With p not nil, it gives p each key and its value's
// span.
func (s *jsonScan) object(p *picker) {
	if !s.open() {
		return
	}
	if s.peek() == '}' {
		s.i++
		s.depth--
		return
	}
	base := len(s.keys)
	var folded map[string]string // for objects of more than 16 keys
	for {
		s.ws()
		if s.peek() != '"' {
			s.err = errSyntax
			return
		}
		raw := s.str()
		if s.err != nil {
			return
		}
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
		if s.peek() != ':' {
			s.err = errSyntax
			return
		}
		s.i++
		s.ws()
		start := s.i
		s.value()
		if s.err != nil {
			return
		}
		if p != nil {
			end := s.i
			for end > start && isBlank(s.data[end-1]) {
				end--
			}
			p.pick(key, start, end)
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			s.keys = s.keys[:base]
			return
		default:
			s.err = errSyntax
			return
		}
	}
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
		return decodeWhole(data, s.cost)
	}
	s := jsonScan{data: data}
	s.ws()
	if s.i >= len(data) || data[s.i] != '{' {
		return nil, nil
	}
	p := picker{t: t}
	s.object(&p)
	if s.err != nil {
		return nil, s.err
	}
	return p.object(data)
}

// checkPick is scanJSON and then pickParams, with one walk of data for
// both.
func checkPick(data []byte, t *readTree) (any, error) {
	s := jsonScan{data: data}
	s.ws()
	if t.whole || s.peek() != '{' {
		s.document()
		switch {
		case s.err != nil:
			return nil, checkError(data, s.err)
		case !t.whole:
			return nil, nil // not an object: nothing below it
		}
		if v, ok := scalar(data); ok {
			return v, nil
		}
		return decodeWhole(data, s.cost)
	}
	p := picker{t: t}
	s.object(&p)
	if s.err == nil {
		s.ws()
		if s.i != len(data) {
			s.err = errSyntax
		}
	}
	if s.err != nil {
		return nil, checkError(data, s.err)
	}
	return p.object(data)
}

// decodeWhole decodes data, whose decodeCost is cost, unless that is
// more than decoding params whole may take.
func decodeWhole(data []byte, cost int64) (any, error) {
	if limit := maxDecodeFactor*int64(len(data)) + decodeSlack; cost > limit {
		return nil, fmt.Errorf("%w: about %d bytes, more than %d", errParamsCost, cost, limit)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("authz: params: %w", err)
	}
	return v, nil
}

// picker collects the members of an object that a read tree reads.
type picker struct {
	t     *readTree
	found []member
}

// pick takes the member key, whose value is data[start:end], if the tree
// reads it.
func (p *picker) pick(key []byte, start, end int) {
	if p.t.keys[string(key)] == nil {
		return
	}
	m := member{key: string(key), start: start, end: end}
	for i := range p.found {
		if p.found[i].key == m.key {
			p.found[i] = m // the last of duplicate keys, as encoding/json
			return
		}
	}
	p.found = append(p.found, m)
}

// object decodes the members found in data, each as the tree reads it.
func (p *picker) object(data []byte) (any, error) {
	obj := make(map[string]any, len(p.found))
	for _, m := range p.found {
		v, err := pickParams(data[m.start:m.end], p.t.keys[m.key])
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
