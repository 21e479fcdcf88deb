// Package readme keeps README.md true: its tests run the code the README's
// tour shows (as Example functions) and check that every Go snippet in the
// README appears, line for line, in Go code that compiles.
package readme
