//go:build !unix

// Package cputime gives benchmarks the CPU time the process has used, for
// a cpu-ns/op metric that a busy shared machine inflates less than wall
// time.
package cputime

import "time"

// Process returns 0 where getrusage is missing: no CPU metric.
func Process() time.Duration { return 0 }
