package authz

import (
	"encoding/json"
	"hash/maphash"
	"maps"
	"math"
	"math/bits"
	"net/http"
	"sync"
)

// decisionCache keeps decisions of one stage of a policy, keyed by the
// residual that made them and the input values it reads (see
// Input.keyValues).
// A policy has its own caches and a reload makes new ones, so nothing
// outlives the policy it was decided by. A stage whose policy calls a
// non-deterministic built-in has none (see cacheable).
type decisionCache struct {
	mu      sync.RWMutex
	entries map[uint64][]*cacheEntry
	n       int
}

// Bounds on a cache: entries, and the size of one entry's key values
// (estimated by sizeOf), so that a stage's cache holds at most about
// maxCacheEntries × maxKeyBytes.
const (
	maxCacheEntries = 4096
	maxKeyBytes     = 4 << 10
)

type cacheEntry struct {
	plan *plan
	vals []any // the values read, copied: nothing the caller holds
	d    Decision
}

var seed = maphash.MakeSeed()

// get returns the decision cached for pl and the values vals (whose hash
// is h), compared value by value.
func (c *decisionCache) get(pl *plan, h uint64, vals []any) (Decision, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.entries[h] {
		if e.plan == pl && equalValues(e.vals, vals) {
			d := e.d
			if d.Headers != nil {
				d.Headers = d.Headers.Clone() // the caller may change it
			}
			return d, true
		}
	}
	return Decision{}, false
}

// put caches d for pl and vals, which it copies; it does nothing when
// the values are too large to keep. When the cache is full an entry
// chosen at random makes room.
func (c *decisionCache) put(pl *plan, h uint64, vals []any, d Decision) {
	size := 0
	for _, v := range vals {
		size += sizeOf(v, maxKeyBytes-size)
		if size > maxKeyBytes {
			return
		}
	}
	e := &cacheEntry{plan: pl, vals: make([]any, len(vals)), d: d}
	for i, v := range vals {
		e.vals[i] = copyValue(v)
	}
	if d.Headers != nil {
		e.d.Headers = d.Headers.Clone()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[uint64][]*cacheEntry)
	}
	for c.n >= maxCacheEntries {
		for k, es := range c.entries { // a random key
			c.n -= len(es)
			delete(c.entries, k)
			break
		}
	}
	c.entries[h] = append(c.entries[h], e)
	c.n++
}

// undefined stands for a path of the input that has no value, as a key
// value: it differs from every value, null included.
type undefinedValue struct{}

var undefined any = undefinedValue{}

// keyable reports whether v is made of the values keyValues hashes and
// compares: those encoding/json decodes (numbers as float64 or
// json.Number), the integers, and map[string]string for headers.
func keyable(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, float64, json.Number, int, int64, int32, uint64, uint32, undefinedValue, map[string]string:
		return true
	case []any:
		for _, e := range v {
			if !keyable(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range v {
			if !keyable(e) {
				return false
			}
		}
		return true
	}
	return false
}

// hashValue hashes a keyable value; equal values (equalValue) hash
// alike. A map's hash does not depend on the order of its keys. It
// mixes maphash's string hashes with arithmetic, so that hashing
// allocates nothing.
func hashValue(v any) uint64 {
	switch v := v.(type) {
	case nil:
		return 0x9e3779b97f4a7c15
	case bool:
		if v {
			return mix(1, 1)
		}
		return mix(1, 2)
	case string:
		return mix(3, maphash.String(seed, v))
	case float64:
		return mix(4, math.Float64bits(v))
	case json.Number:
		return mix(5, maphash.String(seed, string(v)))
	case int:
		return mix(6, uint64(v))
	case int64:
		return mix(7, uint64(v))
	case int32:
		return mix(8, uint64(v))
	case uint64:
		return mix(9, v)
	case uint32:
		return mix(10, uint64(v))
	case undefinedValue:
		return mix(11, 0)
	case []any:
		h := mix(12, uint64(len(v)))
		for _, e := range v {
			h = mix(h, hashValue(e))
		}
		return h
	case map[string]any:
		var sum uint64
		for k, e := range v {
			sum += mix(maphash.String(seed, k), hashValue(e))
		}
		return mix(mix(13, uint64(len(v))), sum)
	case map[string]string:
		var sum uint64
		for k, e := range v {
			sum += mix(maphash.String(seed, k), maphash.String(seed, e))
		}
		return mix(mix(14, uint64(len(v))), sum)
	}
	return 0
}

// mix combines two hashes (the finalizer of SplitMix64 over their sum,
// with the first rotated so that mix(a, b) and mix(b, a) differ).
func mix(a, b uint64) uint64 {
	x := bits.RotateLeft64(a, 31) + b + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func equalValues(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equalValue(a[i], b[i]) {
			return false
		}
	}
	return true
}

// equalValue reports whether a and b are the same value of the same Go
// type: values the policy cannot tell apart. It is stricter than JSON
// equality (1.0 as float64 differs from json.Number "1"), which only
// costs cache hits.
func equalValue(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		x, ok := b.(bool)
		return ok && a == x
	case string:
		x, ok := b.(string)
		return ok && a == x
	case float64:
		x, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(x)
	case json.Number:
		x, ok := b.(json.Number)
		return ok && a == x
	case int:
		x, ok := b.(int)
		return ok && a == x
	case int64:
		x, ok := b.(int64)
		return ok && a == x
	case int32:
		x, ok := b.(int32)
		return ok && a == x
	case uint64:
		x, ok := b.(uint64)
		return ok && a == x
	case uint32:
		x, ok := b.(uint32)
		return ok && a == x
	case undefinedValue:
		_, ok := b.(undefinedValue)
		return ok
	case []any:
		x, ok := b.([]any)
		if !ok || len(a) != len(x) {
			return false
		}
		for i := range a {
			if !equalValue(a[i], x[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		x, ok := b.(map[string]any)
		if !ok || len(a) != len(x) {
			return false
		}
		for k, e := range a {
			f, ok := x[k]
			if !ok || !equalValue(e, f) {
				return false
			}
		}
		return true
	case map[string]string:
		x, ok := b.(map[string]string)
		return ok && maps.Equal(a, x)
	}
	return false
}

// copyValue copies a keyable value deeply.
func copyValue(v any) any {
	switch v := v.(type) {
	case []any:
		c := make([]any, len(v))
		for i, e := range v {
			c[i] = copyValue(e)
		}
		return c
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, e := range v {
			c[k] = copyValue(e)
		}
		return c
	case map[string]string:
		return maps.Clone(v)
	}
	return v
}

// sizeOf estimates the memory a copy of v takes, stopping once it passes
// limit.
func sizeOf(v any, limit int) int {
	switch v := v.(type) {
	case string:
		return 16 + len(v)
	case json.Number:
		return 16 + len(v)
	case []any:
		n := 24
		for _, e := range v {
			if n += sizeOf(e, limit-n); n > limit {
				return n
			}
		}
		return n
	case map[string]any:
		n := 48
		for k, e := range v {
			if n += 32 + len(k) + sizeOf(e, limit-n); n > limit {
				return n
			}
		}
		return n
	case map[string]string:
		n := 48
		for k, e := range v {
			if n += 48 + len(k) + len(e); n > limit {
				return n
			}
		}
		return n
	}
	return 16
}

// cloneHeaders is Decision.Headers' Clone, nil for nil.
func cloneHeaders(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	return h.Clone()
}
