package middleware

import (
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
	// !now.Before(nbfFrom), i.e. now >= nbf-leeway, with the very exp and
	// nbf the Validator compared (see timeClaims).
	expBefore time.Time
	nbfFrom   time.Time
	hasExp    bool
	hasNbf    bool

	seen timeClaims // what the Validator read, until the entry is added

	gen  uint64 // generation of the JWKS keys it was verified with
	size int    // estimated bytes of memory

	shard *cacheShard // set when added
	slot  int         // index in shard.entries, -1 when not there; guarded by shard.mu
}

// timeClaims is claims as jwt's Validator reads them, noting the "exp"
// and "nbf" it gets, so that the cache compares the very times it did.
type timeClaims struct {
	jwt.MapClaims
	exp, nbf *jwt.NumericDate
}

// GetExpirationTime implements jwt.Claims.
func (c *timeClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	d, err := c.MapClaims.GetExpirationTime()
	c.exp = d
	return d, err
}

// GetNotBefore implements jwt.Claims.
func (c *timeClaims) GetNotBefore() (*jwt.NumericDate, error) {
	d, err := c.MapClaims.GetNotBefore()
	c.nbf = d
	return d, err
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
// the lock of one of up to 16 shards, picked by a hash of the token, so
// that the requests which verify tokens in full do not all queue on one
// lock either. Each shard keeps its part of the bounds; when full, it
// evicts entries picked at random: cheap, and no sequence of tokens can
// make it keep more than its bounds.
type tokenCache struct {
	m      sync.Map // token string → *verifiedToken
	seed   maphash.Seed
	shards []cacheShard // a power of two of them

	maxEntries    int // the sums of the shards' bounds
	maxBytes      int
	maxEntryBytes int
}

// cacheShard holds the bookkeeping of a part of the tokens.
type cacheShard struct {
	mu         sync.Mutex
	entries    []*verifiedToken // its entries in m, in no order
	bytes      int              // sum of entries' size
	maxEntries int
	maxBytes   int

	_ [64]byte // a cache line of its own
}

// maxCacheShards is the most shards a cache has; each has 8 entries at
// least, so that its share of the bytes holds an entry of the largest
// size (64 KiB).
const maxCacheShards = 16

// newTokenCache returns a cache of size entries, nil when size is
// negative.
func newTokenCache(size int) *tokenCache {
	switch {
	case size < 0:
		return nil
	case size == 0:
		size = DefaultJWTCacheSize
	}
	size = min(size, 1<<30) // bytes below overflow
	n := 1
	for n < maxCacheShards && 2*n*8 <= size {
		n *= 2
	}
	c := &tokenCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n)}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.maxEntries = size / n
		if i < size%n {
			sh.maxEntries++
		}
		sh.maxBytes = sh.maxEntries * jwtCacheBytesPerEntry
		c.maxEntries += sh.maxEntries
		c.maxBytes += sh.maxBytes
	}
	c.maxEntryBytes = min(jwtCacheMaxEntryBytes, size/n*jwtCacheBytesPerEntry)
	return c
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
// evicting entries of its shard at random to make room. An entry larger
// than maxEntryBytes is not kept.
func (c *tokenCache) add(e *verifiedToken) {
	if e.size > c.maxEntryBytes {
		return
	}
	// A token always goes to the same shard, whose lock then orders every
	// change of its entry in m.
	sh := &c.shards[maphash.String(c.seed, e.token)&uint64(len(c.shards)-1)]
	e.shard = sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := c.m.Load(e.token); ok {
		c.removeLocked(old.(*verifiedToken))
	}
	for len(sh.entries) > 0 && (len(sh.entries) >= sh.maxEntries || sh.bytes+e.size > sh.maxBytes) {
		c.removeLocked(sh.entries[rand.IntN(len(sh.entries))])
	}
	e.slot = len(sh.entries)
	sh.entries = append(sh.entries, e)
	sh.bytes += e.size
	c.m.Store(e.token, e)
}

// remove drops e from the cache, unless it is gone already.
func (c *tokenCache) remove(e *verifiedToken) {
	e.shard.mu.Lock()
	c.removeLocked(e)
	e.shard.mu.Unlock()
}

// removeLocked drops e; its shard is locked.
func (c *tokenCache) removeLocked(e *verifiedToken) {
	if e.slot < 0 {
		return
	}
	sh := e.shard
	last := len(sh.entries) - 1
	moved := sh.entries[last]
	sh.entries[e.slot] = moved
	moved.slot = e.slot
	sh.entries[last] = nil
	sh.entries = sh.entries[:last]
	sh.bytes -= e.size
	e.slot = -1
	c.m.CompareAndDelete(e.token, e)
}

// clear empties the cache.
func (c *tokenCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for len(sh.entries) > 0 {
			c.removeLocked(sh.entries[len(sh.entries)-1])
		}
		sh.mu.Unlock()
	}
}

// len returns the number of entries and their estimated bytes.
func (c *tokenCache) len() (entries, bytes int) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		entries += len(sh.entries)
		bytes += sh.bytes
		sh.mu.Unlock()
	}
	return entries, bytes
}

// Estimated memory, in bytes, of the parts of an entry. They err on the
// large side; a test holds decodeClaims's estimate to the memory the
// decoder really keeps.
const (
	entryOverhead = 320 // verifiedToken, its sync.Map nodes and boxed key, its slot
	boxOverhead   = 32  // a string or slice header boxed in an interface
)

// entrySize estimates the memory an entry keeps alive: the token, raw,
// and claims of decodedSize bytes (as decodeClaims estimates them).
func entrySize(token string, raw []byte, decodedSize int) int {
	return entryOverhead + len(token) + allocSize(cap(raw)) + decodedSize
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
