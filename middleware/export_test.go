package middleware

import "time"

// SetJWTClock makes v read the time from now, in its cache and in jwt's
// validator alike. Call it before v is used.
func SetJWTClock(v *JWTVerifier, now func() time.Time) { v.now = now }

// JWTCacheLen returns the number of tokens in v's cache, -1 when it has
// none.
func JWTCacheLen(v *JWTVerifier) int {
	if v.cache == nil {
		return -1
	}
	return v.cache.len()
}
