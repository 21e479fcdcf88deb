package middleware

import (
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"
)

// DefaultJWTCacheSize is how many verified tokens a [JWTVerifier] keeps
// by default (see [JWTOptions].CacheSize).
const DefaultJWTCacheSize = 1024

// Memory bounds of the verified-token cache, besides its number of
// entries.
const (
	// jwtCacheBytesPerEntry times the number of entries is the memory the
	// cache may take: 8 MiB with the default 1024 entries.
	jwtCacheBytesPerEntry = 8 << 10
	// jwtCacheMaxEntryBytes is the most one entry may take; a larger
	// token is verified every time.
	jwtCacheMaxEntryBytes = 64 << 10
)

// verifiedToken is a token that passed [JWTVerifier.Verify], with what a
// later call needs to return its result again without verifying it.
type verifiedToken struct {
	token  string
	claims map[string]any // shared by every request with the token: read-only
	raw    []byte         // likewise

	// The token's time window, as jwt's Validator checks it: valid while
	// now.Before(expBefore), i.e. now < exp+leeway, and while
	// !now.Before(nbfFrom), i.e. now >= nbf-leeway. exp and nbf are read
	// by jwt's own MapClaims getters, with its NumericDate precision.
	expBefore time.Time
	nbfFrom   time.Time
	hasExp    bool
	hasNbf    bool

	gen  uint64 // generation of the JWKS keys it was verified with
	size int    // estimated bytes of memory

	slot int // index in tokenCache.entries, -1 once removed; guarded by tokenCache.mu
}

// current reports whether the token's time claims still hold at now,
// with exactly the comparisons of jwt's Validator.
func (e *verifiedToken) current(now time.Time) bool {
	if e.hasExp && !now.Before(e.expBefore) {
		return false
	}
	if e.hasNbf && now.Before(e.nbfFrom) {
		return false
	}
	return true
}

// tokenCache is the verified-token cache of a JWTVerifier: a map from the
// exact token to its verifiedToken, bounded in entries and in bytes.
//
// Lookups take no lock and write no shared memory (sync.Map's reads are
// lock-free), so a token that every request carries does not make a hot
// spot however many cores serve them. Adding and removing entries takes
// mu, which only the requests that verify a token in full (tens of
// microseconds for RSA and ECDSA) or meet a stale entry contend for.
// When full, the cache evicts entries picked at random: cheap, and no
// sequence of tokens can make it keep more than its bounds.
type tokenCache struct {
	m sync.Map // token string → *verifiedToken

	mu      sync.Mutex
	entries []*verifiedToken // every entry of m, in no order
	bytes   int              // sum of entries' size

	maxEntries    int
	maxBytes      int
	maxEntryBytes int
}

// newTokenCache returns a cache of size entries, nil when size is
// negative.
func newTokenCache(size int) *tokenCache {
	switch {
	case size < 0:
		return nil
	case size == 0:
		size = DefaultJWTCacheSize
	}
	maxBytes := size * jwtCacheBytesPerEntry
	if maxBytes/jwtCacheBytesPerEntry != size { // overflow
		maxBytes = int(^uint(0) >> 1)
	}
	return &tokenCache{
		maxEntries:    size,
		maxBytes:      maxBytes,
		maxEntryBytes: min(jwtCacheMaxEntryBytes, maxBytes),
	}
}

// get returns the entry of token, nil when there is none.
func (c *tokenCache) get(token string) *verifiedToken {
	v, ok := c.m.Load(token)
	if !ok {
		return nil
	}
	return v.(*verifiedToken)
}

// add puts e in the cache, in place of any entry of the same token,
// evicting entries at random to make room. An entry larger than
// maxEntryBytes is not kept.
func (c *tokenCache) add(e *verifiedToken) {
	if e.size > c.maxEntryBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m.Load(e.token); ok {
		c.removeLocked(old.(*verifiedToken))
	}
	for len(c.entries) > 0 && (len(c.entries) >= c.maxEntries || c.bytes+e.size > c.maxBytes) {
		c.removeLocked(c.entries[rand.IntN(len(c.entries))])
	}
	e.slot = len(c.entries)
	c.entries = append(c.entries, e)
	c.bytes += e.size
	c.m.Store(e.token, e)
}

// remove drops e from the cache, unless it is gone already.
func (c *tokenCache) remove(e *verifiedToken) {
	c.mu.Lock()
	c.removeLocked(e)
	c.mu.Unlock()
}

func (c *tokenCache) removeLocked(e *verifiedToken) {
	if e.slot < 0 {
		return
	}
	last := len(c.entries) - 1
	moved := c.entries[last]
	c.entries[e.slot] = moved
	moved.slot = e.slot
	c.entries[last] = nil
	c.entries = c.entries[:last]
	c.bytes -= e.size
	e.slot = -1
	c.m.CompareAndDelete(e.token, e)
}

// clear empties the cache.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		e.slot = -1
		c.m.CompareAndDelete(e.token, e)
	}
	clear(c.entries)
	c.entries = c.entries[:0]
	c.bytes = 0
}

// len returns the number of entries and their estimated bytes.
func (c *tokenCache) len() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

// Estimated memory, in bytes, of the parts of an entry. They err on the
// large side; a test holds decodedSize to the memory the decoder really
// keeps.
const (
	entryOverhead = 320 // verifiedToken, its sync.Map nodes and boxed key, its slot
	boxOverhead   = 32  // a string or slice header boxed in an interface
)

// entrySize estimates the memory an entry keeps alive: the token, raw,
// and the claims decoded from payloadLen bytes of JSON (raw before it was
// compacted).
func entrySize(token string, raw []byte, payloadLen int, claims map[string]any) int {
	return entryOverhead + len(token) + allocSize(cap(raw)) + decodedSize(payloadLen, claims)
}

// decodedSize estimates the memory of the claims decodeJSONObject decoded
// from n bytes of JSON: the string it copied them to, whose pieces the
// keys, strings and numbers are, and the rest.
func decodedSize(n int, claims map[string]any) int {
	return allocSize(n) + claimsSize(claims)
}

// allocSize bounds the memory the allocator takes for n bytes: small
// sizes go up to their size class, 12.5% more at most, and 16 bytes at
// least; large ones to whole 8 KiB pages.
func allocSize(n int) int {
	if n <= 32<<10 {
		return max(16, n+n/8+8)
	}
	return (n + 8<<10 - 1) &^ (8<<10 - 1)
}

// claimsSize estimates the memory of a value decodeJSONObject returns:
// maps, slices, strings and the interfaces that box them. Strings count
// in full, although most are pieces of the decoder's copy of the JSON:
// those with escapes are not.
func claimsSize(v any) int {
	switch v := v.(type) {
	case map[string]any:
		n := mapSize(len(v))
		for k, x := range v {
			n += allocSize(len(k)) + claimsSize(x)
		}
		return n
	case []any:
		// The boxed slice header and the backing array.
		n := boxOverhead + allocSize(16*cap(v))
		for _, x := range v {
			n += claimsSize(x)
		}
		return n
	case string:
		return boxOverhead + allocSize(len(v))
	case json.Number:
		return boxOverhead + allocSize(len(v))
	case bool, nil:
		return 0 // interfaces to static values
	}
	return 64
}

// mapSize estimates a map[string]any of n entries without its keys' and
// values' own memory: a header, and groups of 8 slots of 32 bytes (a
// string key and an interface value) and a control word, filled to 7/8
// at most, in tables of at most 128 groups, each table's groups in one
// allocation.
func mapSize(n int) int {
	const header, group, maxGroups = 48, 8 + 8*32, 128
	groups := 1
	for groups*7 < n {
		groups *= 2
	}
	if groups <= maxGroups {
		return header + 64 + allocSize(groups*group)
	}
	tables := groups / maxGroups
	return header + 64 + tables*(128+allocSize(maxGroups*group)+8<<10/8)
}
