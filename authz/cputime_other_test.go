//go:build !unix

package authz_test

import "time"

// processCPU is 0 where getrusage is missing: cpu-ns/op reads 0.
func processCPU() time.Duration { return 0 }
