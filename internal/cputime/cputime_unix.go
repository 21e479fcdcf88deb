//go:build unix

// Package cputime gives benchmarks the CPU time the process has used, for
// a cpu-ns/op metric that a busy shared machine inflates less than wall
// time.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the CPU time (user and system) the process has used.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
