package authz

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Internals the black-box tests in package authz_test reach.

// DecodeParams is decodeParams, for the fuzz test.
func DecodeParams(data []byte, lazy bool) (ast.Value, error) {
	return decodeParams(data, &readTree{whole: true}, lazy)
}

// PickParams is decodeParams of the parts at paths only.
func PickParams(data []byte, paths [][]string) (ast.Value, error) {
	return decodeParams(data, newReadTree(false, paths), false)
}

// RecoverEval runs f the way an evaluation runs, turning a panic into the
// error returned.
func RecoverEval(f func()) (err error) {
	defer recoverEval(&err)
	f()
	return nil
}

// DecodeCost is what scanJSON estimates decoding data whole takes.
func DecodeCost(data []byte) (int64, error) { return scanJSON(data) }

// MaxDecodeFactor and DecodeSlack bound what decoding params whole may
// take.
const (
	MaxDecodeFactor = maxDecodeFactor
	DecodeSlack     = decodeSlack
)

// SetClock sets the time evaluations see in time.now_ns; nil is the time
// now.
func SetClock(now func() time.Time) {
	if now == nil {
		clock.Store(nil)
		return
	}
	clock.Store(&now)
}

// Mismatch is a decision the fast path made that plain evaluation of the
// whole policy did not.
type Mismatch struct {
	Service, Function string
	Fast, Slow        Decision
	FastErr, SlowErr  error
}

// SetDifferential makes every decision from now on be made again by plain
// evaluation of the whole policy, with the whole input, and reports each
// difference to report.
func SetDifferential(report func(Mismatch)) {
	differential = func(in Input, fast Decision, fastErr error, slow Decision, slowErr error) {
		if errors.Is(slowErr, errParamsCost) {
			return // params the plain path cannot decode whole
		}
		if (fastErr != nil) != (slowErr != nil) || fastErr == nil && !sameDecision(fast, slow) {
			report(Mismatch{in.Service, in.Function, fast, slow, fastErr, slowErr})
		}
	}
}

func sameDecision(a, b Decision) bool {
	return a.Allow == b.Allow && a.Status == b.Status && a.Reason == b.Reason && reflect.DeepEqual(a.Headers, b.Headers)
}

// CacheKeys describes what the decisions of each stage of a's plan for
// service.function are cached on, one string per input path:
// "auth.role" for a value, "type(auth)" for a type alone; nil for a
// stage whose decisions are constant or not cached. It makes the plan
// and waits for it.
func CacheKeys(a *Authorizer, service, function string) [][]string {
	p := a.current.Load()
	p.plan(context.Background(), service, function)
	cp := (*p.plans.m.Load())[[2]string{service, function}]
	<-cp.ready
	var keys [][]string
	for _, pl := range cp.stages {
		var k []string
		for _, kp := range pl.paths {
			s := strings.Join(kp.path, ".")
			if kp.typ {
				s = "type(" + s + ")"
			}
			k = append(k, s)
		}
		slices.Sort(k)
		keys = append(keys, k)
	}
	return keys
}

// WithoutDifferential runs f with the differential check off, for a test
// that measures the fast path alone; no other test may run meanwhile.
func WithoutDifferential(f func()) {
	saved := differential
	differential = nil
	defer func() { differential = saved }()
	f()
}

// SetPlanLimits sets how many service.function plans a's policy keeps
// and how often at most a full table is emptied, before a's first call.
func SetPlanLimits(a *Authorizer, max int, renew time.Duration) {
	p := a.current.Load()
	p.plans.mu.Lock()
	defer p.plans.mu.Unlock()
	p.plans.max, p.plans.renew = max, renew
}
