package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HeaderAuthSig carries the host's signature of the Mesh-Auth claims of a
// call: a function passes it on, unchanged, with the claims, the request
// ID and the deadline when it calls another function, and the host that
// routes that call believes the claims only when the signature holds.
const HeaderAuthSig = "Mesh-Auth-Sig"

// MinClaimsKeyLen is the shortest [ClaimsKey] secret accepted.
const MinClaimsKeyLen = 32

// ErrClaimsSignature is the error of [ClaimsSigner.Verify] for a signature
// that is missing, malformed, made with an unknown key, or does not match
// the claims, request ID and deadline it came with.
var ErrClaimsSignature = errors.New("transport: forwarded claims: the signature does not hold")

// ErrClaimsExpired is the error of [ClaimsSigner.Verify] for a valid
// signature whose deadline has passed: a forwarded identity ends with the
// call it was given to.
var ErrClaimsExpired = errors.New("transport: forwarded claims: the call's deadline has passed")

// ClaimsKey is one key a host signs forwarded claims with. ID names it in
// every signature, so that keys can be rotated: sign with a new key while
// the old one still verifies the calls in flight.
type ClaimsKey struct {
	ID     string // 1 to 64 characters of a name (see ValidateName)
	Secret []byte // at least MinClaimsKeyLen bytes; keep it like a password
}

// ClaimsSigner signs the claims a host forwards with a call and verifies
// the signatures that come back on nested calls. Only host processes hold
// its keys. A signature binds the claims (byte for byte), the request ID
// and the deadline, so none of them can be changed, and it is valid only
// until that deadline. It is safe for concurrent use.
type ClaimsSigner struct {
	current string
	keys    map[string]*claimsKey
}

// claimsKey is one key with a pool of its keyed hashes. Kept because it
// measurably matters: without it BenchmarkCall/mesh/small allocates 9%
// more bytes per call, and BenchmarkClaimsSigner signs 2.8× and verifies
// 4.9× slower (docs/performance.md, "Plain code instead of tricks").
type claimsKey struct {
	pool sync.Pool // *macState
}

type macState struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
	dec [sha256.Size + 3]byte
}

// NewClaimsSigner returns a signer that signs with current and verifies
// with current and every key of previous.
func NewClaimsSigner(current ClaimsKey, previous ...ClaimsKey) (*ClaimsSigner, error) {
	s := &ClaimsSigner{current: current.ID, keys: map[string]*claimsKey{}}
	for _, k := range append([]ClaimsKey{current}, previous...) {
		if err := ValidateName(k.ID); err != nil {
			return nil, fmt.Errorf("transport: claims key ID: %w", err)
		}
		if len(k.Secret) < MinClaimsKeyLen {
			return nil, fmt.Errorf("transport: claims key %q: secret of %d bytes, want at least %d", k.ID, len(k.Secret), MinClaimsKeyLen)
		}
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("transport: claims key %q given twice", k.ID)
		}
		secret := append([]byte(nil), k.Secret...)
		s.keys[k.ID] = &claimsKey{pool: sync.Pool{New: func() any {
			return &macState{h: hmac.New(sha256.New, secret), buf: make([]byte, 0, 512)}
		}}}
	}
	return s, nil
}

// Sign returns the Mesh-Auth-Sig value for claims (the Mesh-Auth value)
// forwarded with the call of requestID that ends at deadline.
func (s *ClaimsSigner) Sign(claims, requestID string, deadline time.Time) string {
	return s.sign(formClaims, claims, requestID, deadline)
}

// SignPolicyCall is [ClaimsSigner.Sign] for a call the policy makes (see
// [PolicyCaller]), and for the nested calls made within one: the
// signature also says so, and no one without the key can make it say
// otherwise. claims may be empty (an anonymous caller): the mark travels
// all the same. A function passes the value on like any Mesh-Auth-Sig,
// and the router that routes its nested calls learns from it
// ([ClaimsSigner.PolicyCall]) that they are made within a policy call.
func (s *ClaimsSigner) SignPolicyCall(claims, requestID string, deadline time.Time) string {
	return s.sign(formPolicy, claims, requestID, deadline)
}

// PolicyCall reports whether sig, a signature [ClaimsSigner.Verify]
// accepts, was made by [ClaimsSigner.SignPolicyCall]. The answer means
// nothing for a signature that does not verify.
func (s *ClaimsSigner) PolicyCall(sig string) bool {
	return strings.HasPrefix(sig, formPolicy.prefix)
}

// A signature's form: the prefix of its value and the first line of what
// its MAC covers, so that neither form can pass for the other.
type sigForm struct{ prefix, domain string }

var (
	formClaims = sigForm{"v1.", "funcmesh-claims-v1\n"}
	formPolicy = sigForm{"p1.", "funcmesh-policy-v1\n"}
)

func (s *ClaimsSigner) sign(form sigForm, claims, requestID string, deadline time.Time) string {
	st := s.keys[s.current].pool.Get().(*macState)
	defer s.keys[s.current].pool.Put(st)
	mac := st.mac(form.domain, claims, requestID, deadline)
	st.buf = append(append(append(st.buf[:0], form.prefix...), s.current...), '.')
	st.buf = base64.RawURLEncoding.AppendEncode(st.buf, mac)
	return string(st.buf)
}

// Verify checks sig against claims, requestID and deadline: it returns
// nil when one of the signer's keys signed exactly these (with
// [ClaimsSigner.Sign] or [ClaimsSigner.SignPolicyCall]), and now is
// before the deadline; [ErrClaimsExpired] when the signature holds but
// the deadline has passed; [ErrClaimsSignature] otherwise.
func (s *ClaimsSigner) Verify(sig, claims, requestID string, deadline, now time.Time) error {
	form := formClaims
	rest, ok := strings.CutPrefix(sig, formClaims.prefix)
	if !ok {
		if rest, ok = strings.CutPrefix(sig, formPolicy.prefix); !ok {
			return ErrClaimsSignature
		}
		form = formPolicy
	}
	id, mac64, ok := strings.Cut(rest, ".")
	key, known := s.keys[id]
	if !ok || !known || len(mac64) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return ErrClaimsSignature
	}
	st := key.pool.Get().(*macState)
	defer key.pool.Put(st)
	n, err := base64.RawURLEncoding.Decode(st.dec[:], []byte(mac64))
	if err != nil || n != sha256.Size || !hmac.Equal(st.dec[:n], st.mac(form.domain, claims, requestID, deadline)) {
		return ErrClaimsSignature
	}
	if !now.Before(deadline) {
		return ErrClaimsExpired
	}
	return nil
}

// mac is the HMAC-SHA256 of the signed fields, each prefixed by its
// length so that no two sets of fields share an input:
//
//	<domain><len>:<request ID>\n<len>:<claims>\n<deadline ms>\n
//
// where domain is "funcmesh-claims-v1\n", or "funcmesh-policy-v1\n" for
// a policy call. It is valid until st is used again.
func (st *macState) mac(domain, claims, requestID string, deadline time.Time) []byte {
	b := append(st.buf[:0], domain...)
	b = strconv.AppendInt(b, int64(len(requestID)), 10)
	b = append(append(append(b, ':'), requestID...), '\n')
	b = strconv.AppendInt(b, int64(len(claims)), 10)
	b = append(append(append(b, ':'), claims...), '\n')
	b = strconv.AppendInt(b, deadline.UnixMilli(), 10)
	b = append(b, '\n')
	st.h.Reset()
	st.h.Write(b)
	if cap(b) <= 64<<10 {
		st.buf = b[:0]
	}
	return st.h.Sum(st.sum[:0])
}
