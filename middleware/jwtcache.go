package middleware

import (
	"strings"
	"sync"
	"time"
)

// DefaultJWTCacheSize is how many verified tokens a [JWTVerifier] keeps
// by default (see [JWTOptions].CacheSize).
const DefaultJWTCacheSize = 1024

// tokenCache holds tokens that passed every check of
// [JWTVerifier.Verify], each until its "exp" and only for the key set it
// was verified with. It keeps at most size tokens and drops an arbitrary
// one to make room.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]cachedToken
	size    int
}

type cachedToken struct {
	claims map[string]any // shared by every request with the token: read-only
	raw    []byte
	exp    time.Time // the token's "exp": the entry is not used from then on
	keys   uint64    // the generation of the key set that verified it
}

// newTokenCache returns a cache of size entries (DefaultJWTCacheSize for
// 0), nil when size is negative.
func newTokenCache(size int) *tokenCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultJWTCacheSize
	}
	return &tokenCache{entries: make(map[string]cachedToken), size: size}
}

// get returns the entry of token if it is still good at now for the key
// set of generation keys.
func (c *tokenCache) get(token string, now time.Time, keys uint64) (cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[token]
	if ok && (!now.Before(e.exp) || e.keys != keys) {
		delete(c.entries, token)
		ok = false
	}
	return e, ok
}

// put adds token. The key is a copy: token may be part of a large request
// header, which the cache must not keep alive.
func (c *tokenCache) put(token string, e cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[token]; !ok && len(c.entries) >= c.size {
		for k := range c.entries { // map order: an arbitrary entry
			delete(c.entries, k)
			break
		}
	}
	c.entries[strings.Clone(token)] = e
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
