package authz_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/funcmesh/funcmesh/authz"
)

// mismatches collects the decisions in which the fast path and plain
// evaluation of the whole policy differed, over every test of the
// package: every policy the tests load is checked call by call.
var mismatches struct {
	sync.Mutex
	list []authz.Mismatch
	n    int
}

func TestMain(m *testing.M) {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() != "" {
		// Benchmarks measure the fast path alone.
		os.Exit(m.Run())
	}
	authz.SetDifferential(func(mm authz.Mismatch) {
		// A decision cut short by its context may differ from one that
		// ran to the end.
		for _, err := range []error{mm.FastErr, mm.SlowErr} {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
		}
		mismatches.Lock()
		mismatches.n++
		if len(mismatches.list) < 20 {
			mismatches.list = append(mismatches.list, mm)
		}
		mismatches.Unlock()
	})
	code := m.Run()
	mismatches.Lock()
	if mismatches.n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d decisions of the fast path differ from plain evaluation:\n", mismatches.n)
		for _, mm := range mismatches.list {
			fmt.Fprintf(os.Stderr, "  %s.%s: fast %+v, %v; plain %+v, %v\n", mm.Service, mm.Function, mm.Fast, mm.FastErr, mm.Slow, mm.SlowErr)
		}
		code = 1
	}
	mismatches.Unlock()
	os.Exit(code)
}
