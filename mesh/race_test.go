//go:build race

package mesh_test

// raceEnabled reports whether the race detector is on: it changes what
// allocates (sync.Pool drops items at random) and caps a process at 8128
// goroutines, so a few tests skip under it.
const raceEnabled = true
