package authz

// Internals the black-box tests in package authz_test reach.

// DecodeParams is decodeParams, for the fuzz test.
var DecodeParams = decodeParams

// RecoverEval runs f the way an evaluation runs, turning a panic into the
// error returned.
func RecoverEval(f func()) (err error) {
	defer recoverEval(&err)
	f()
	return nil
}
