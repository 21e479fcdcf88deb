package authz

import "github.com/open-policy-agent/opa/v1/ast"

// Internals the black-box tests in package authz_test reach.

// DecodeParams is decodeParams, for the fuzz test.
func DecodeParams(data []byte, lazy bool) (ast.Value, error) {
	return decodeParams(data, &readTree{whole: true}, lazy)
}

// PickParams is decodeParams of the parts at paths only.
func PickParams(data []byte, paths [][]string) (ast.Value, error) {
	return decodeParams(data, newReadTree(false, paths), false)
}

// RecoverEval runs f the way an evaluation runs, turning a panic into the
// error returned.
func RecoverEval(f func()) (err error) {
	defer recoverEval(&err)
	f()
	return nil
}

// DecodeCost is what scanJSON estimates decoding data whole takes.
func DecodeCost(data []byte) (int64, error) { return scanJSON(data) }

// MaxDecodeFactor and DecodeSlack bound what decoding params whole may
// take.
const (
	MaxDecodeFactor = maxDecodeFactor
	DecodeSlack     = decodeSlack
)
