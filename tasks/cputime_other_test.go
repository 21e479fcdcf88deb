//go:build !unix

package tasks_test

import "time"

// processCPU returns 0 where getrusage is missing: no cpu-ns/op metric.
func processCPU() time.Duration { return 0 }
