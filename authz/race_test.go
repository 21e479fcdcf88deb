//go:build race

package authz_test

// raceEnabled reports whether the race detector is on: it changes what
// allocates, so a test that holds an estimate to real allocations skips
// under it.
const raceEnabled = true
