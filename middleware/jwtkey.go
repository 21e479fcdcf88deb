package middleware

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// JWTKey is a key that verifies tokens: an HMAC secret or a public key,
// with an optional key ID and algorithm.
type JWTKey struct {
	// ID is the key ID: the key verifies only tokens whose "kid" header is
	// ID or absent. An empty ID matches every token.
	ID string

	// Algorithm, when set, is the one algorithm ("RS256") the key may
	// verify; else it verifies every allowed algorithm of its kind.
	Algorithm string

	// Key is one of:
	//
	//	[]byte             an HMAC secret, for HS256, HS384 and HS512; at least as
	//	                   long as the hash (32, 48, 64 bytes), as RFC 7518 asks
	//	*rsa.PublicKey     for RS256, RS384, RS512, PS256, PS384 and PS512; 2048 to
	//	                   8192 bits
	//	*ecdsa.PublicKey   for ES256 (P-256), ES384 (P-384) or ES512 (P-521)
	//	ed25519.PublicKey  for EdDSA
	//
	// Use [ParsePublicKeyPEM] for a public key in PEM form.
	Key any
}

// keyKind is what kind of key an algorithm needs; a key verifies only the
// algorithms of its kind, which rules out algorithm confusion (an RSA key
// used as an HMAC secret, a P-256 key with ES512).
type keyKind uint8

const (
	kindHMAC keyKind = iota + 1
	kindRSA
	kindP256
	kindP384
	kindP521
	kindEd25519
)

// algKinds lists every algorithm the verifier supports. "none" is not one.
var algKinds = map[string]keyKind{
	"HS256": kindHMAC, "HS384": kindHMAC, "HS512": kindHMAC,
	"RS256": kindRSA, "RS384": kindRSA, "RS512": kindRSA,
	"PS256": kindRSA, "PS384": kindRSA, "PS512": kindRSA,
	"ES256": kindP256, "ES384": kindP384, "ES512": kindP521,
	"EdDSA": kindEd25519,
}

// algOrder is algKinds in a stable order.
var algOrder = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// hmacMinLen is the shortest secret for each HMAC algorithm.
var hmacMinLen = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

const (
	minRSABits = 2048
	maxRSABits = 8192
)

// verifyKey is a checked JWTKey.
type verifyKey struct {
	id   string
	alg  string
	kind keyKind
	key  any
}

// verifies reports whether k may verify a token signed with alg.
func (k *verifyKey) verifies(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	if algKinds[alg] != k.kind {
		return false
	}
	if k.kind == kindHMAC {
		return len(k.key.([]byte)) >= hmacMinLen[alg]
	}
	return true
}

// checkKey validates a JWTKey and returns it in the form the verifier
// uses.
func checkKey(k JWTKey) (verifyKey, error) {
	vk := verifyKey{id: k.ID, alg: k.Algorithm}
	switch key := k.Key.(type) {
	case []byte:
		if bytes.Contains(key, []byte("-----BEGIN")) {
			return vk, errors.New("the HMAC secret is a PEM block: a public key is not a secret (give it as *rsa.PublicKey etc., see ParsePublicKeyPEM)")
		}
		if len(key) < hmacMinLen["HS256"] {
			return vk, fmt.Errorf("the HMAC secret has %d bytes; HS256 needs at least 32", len(key))
		}
		vk.kind, vk.key = kindHMAC, bytes.Clone(key)
	case *rsa.PublicKey:
		if key == nil || key.N == nil {
			return vk, errors.New("nil RSA key")
		}
		if n := key.N.BitLen(); n < minRSABits || n > maxRSABits {
			return vk, fmt.Errorf("RSA key of %d bits; want %d to %d", n, minRSABits, maxRSABits)
		}
		if key.E < 3 || key.E%2 == 0 {
			return vk, fmt.Errorf("RSA key with exponent %d", key.E)
		}
		vk.kind, vk.key = kindRSA, key
	case *ecdsa.PublicKey:
		if key == nil || key.Curve == nil {
			return vk, errors.New("nil ECDSA key")
		}
		switch key.Curve {
		case elliptic.P256():
			vk.kind = kindP256
		case elliptic.P384():
			vk.kind = kindP384
		case elliptic.P521():
			vk.kind = kindP521
		default:
			return vk, fmt.Errorf("ECDSA key on curve %s; want P-256, P-384 or P-521", key.Curve.Params().Name)
		}
		vk.key = key
	case ed25519.PublicKey:
		if len(key) != ed25519.PublicKeySize {
			return vk, fmt.Errorf("Ed25519 key of %d bytes", len(key))
		}
		vk.kind, vk.key = kindEd25519, ed25519.PublicKey(bytes.Clone(key))
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return vk, fmt.Errorf("%T is a private key: give its public key", key)
	case string:
		return vk, errors.New("an HMAC secret is a []byte, not a string")
	default:
		return vk, fmt.Errorf("unsupported key type %T", key)
	}
	if vk.alg != "" {
		kind, ok := algKinds[vk.alg]
		if !ok {
			return vk, fmt.Errorf("unsupported algorithm %q", vk.alg)
		}
		if kind != vk.kind {
			return vk, fmt.Errorf("algorithm %s does not go with a %s", vk.alg, kindName(vk.kind))
		}
		if !vk.verifies(vk.alg) {
			return vk, fmt.Errorf("the HMAC secret is too short for %s", vk.alg)
		}
	}
	return vk, nil
}

func kindName(k keyKind) string {
	switch k {
	case kindHMAC:
		return "HMAC secret"
	case kindRSA:
		return "RSA key"
	case kindP256:
		return "P-256 key"
	case kindP384:
		return "P-384 key"
	case kindP521:
		return "P-521 key"
	case kindEd25519:
		return "Ed25519 key"
	}
	return "key"
}

// ParsePublicKeyPEM parses the first PEM block of data: a "PUBLIC KEY"
// (PKIX), an "RSA PUBLIC KEY" (PKCS #1) or a "CERTIFICATE", whose public
// key it returns. The result is an *rsa.PublicKey, an *ecdsa.PublicKey or
// an ed25519.PublicKey, ready for [JWTKey].Key.
func ParsePublicKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("middleware: no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("middleware: PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("middleware: %s: %w", block.Type, err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	}
	return nil, fmt.Errorf("middleware: unsupported public key type %T", key)
}
