package authz

import "github.com/open-policy-agent/opa/v1/ast"

// Internals the black-box tests in package authz_test reach.

// DecodeParams is decodeParams, for the fuzz test.
func DecodeParams(data []byte, lazy bool) (ast.Value, error) { return decodeParams(data, lazy) }

// RecoverEval runs f the way an evaluation runs, turning a panic into the
// error returned.
func RecoverEval(f func()) (err error) {
	defer recoverEval(&err)
	f()
	return nil
}
