package middleware

import "time"

// DecodeJSONObject exposes the claims decoder to the black-box tests, which
// hold it to encoding/json's results.
var DecodeJSONObject = decodeJSONObject

// SetJWTClock makes v read the time from now, in its cache and in jwt's
// validator alike. Call it before v is used.
func SetJWTClock(v *JWTVerifier, now func() time.Time) { v.now = now }

// JWTCacheLen returns the number of tokens in v's cache and their
// estimated bytes; -1, -1 when v has no cache.
func JWTCacheLen(v *JWTVerifier) (entries, bytes int) {
	if v.cache == nil {
		return -1, -1
	}
	return v.cache.len()
}

// JWTCacheBounds returns the bounds of v's cache: entries, total bytes
// and bytes per entry.
func JWTCacheBounds(v *JWTVerifier) (entries, bytes, entryBytes int) {
	return v.cache.maxEntries, v.cache.maxBytes, v.cache.maxEntryBytes
}

// DecodeClaims is the claims decoder with its estimate of the memory the
// claims take.
var DecodeClaims = decodeClaims

// DecodeJWTHeader exposes the header reader to the tests, which hold it
// to what encoding/json's map of the header says.
func DecodeJWTHeader(s string) (alg, kid string, hasKid, kidIsString, crit bool, err error) {
	h, err := decodeJWTHeader(s)
	return h.alg, h.kid, h.hasKid, h.kidStr, h.crit, err
}
