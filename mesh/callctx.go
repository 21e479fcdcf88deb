package mesh

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

type callKey struct{}

// callCtx is the context a function gets. It carries the call (see
// [CallFromContext]) and ends at the call's deadline, when the service
// stops hard (its base context is cancelled) or when the function returns.
//
// Most functions never wait on their context, and a context.WithDeadline
// per call costs a timer, a child registration under the service's base
// context (a lock every call shares) and five allocations. So the timer
// context is made only when something needs its Done channel: Done itself,
// or a context derived from this one (context.WithCancel and friends call
// Done). Until then Err answers from the clock and the base context, which
// is what the timer context would answer. Kept because it measurably
// matters: 2.4 → 0.1 µs of CPU for Service.serve a call
// (docs/performance.md, "Three back for issue 17").
type callCtx struct {
	call     *Call
	base     context.Context
	deadline time.Time

	made   atomic.Bool // inner is set; never unset
	mu     sync.Mutex  // serializes making inner
	inner  context.Context
	cancel context.CancelFunc
}

// expiredCtx and endedCtx stand for the context of a function that has
// returned and never asked for Done: its deadline had passed, or not.
var (
	expiredCtx = func() context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
		cancel()
		return ctx
	}()
	endedCtx = func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}()
)

func (c *callCtx) init(call *Call, base context.Context) {
	c.call, c.base, c.deadline = call, base, call.deadline
}

// timer returns the context that ends at the deadline, making it on first
// use.
func (c *callCtx) timer() context.Context {
	if c.made.Load() {
		return c.inner
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.made.Load() {
		c.inner, c.cancel = context.WithDeadline(c.base, c.deadline)
		c.made.Store(true)
	}
	return c.inner
}

// end is called when the function has returned: like the cancel of a
// context.WithDeadline, it ends the context for whoever still holds it.
func (c *callCtx) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.made.Load() {
		c.cancel()
		return
	}
	if err := c.lazyErr(); err == context.DeadlineExceeded {
		c.inner = expiredCtx
	} else {
		c.inner = endedCtx
	}
	c.made.Store(true)
}

// lazyErr is Err before the timer context is made.
func (c *callCtx) lazyErr() error {
	if err := c.base.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Deadline returns the call's deadline.
func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done returns a channel closed at the deadline, when the service stops
// hard, or when the function returns.
func (c *callCtx) Done() <-chan struct{} { return c.timer().Done() }

// Err returns context.DeadlineExceeded once the deadline has passed,
// context.Canceled once the service stopped hard or the function returned,
// and nil before.
func (c *callCtx) Err() error {
	if c.made.Load() {
		return c.inner.Err()
	}
	return c.lazyErr()
}

// Value returns the call for callKey and defers to the parent otherwise.
func (c *callCtx) Value(key any) any {
	if _, ok := key.(callKey); ok {
		return c.call
	}
	if !c.made.Load() && c.lazyErr() != nil {
		// context.Cause finds the cancelCtx through Value: once the
		// context has ended, that must be the one that says why.
		return c.timer().Value(key)
	}
	if c.made.Load() {
		return c.inner.Value(key)
	}
	return c.base.Value(key)
}

// String names the context, as the standard library's contexts do.
func (c *callCtx) String() string {
	return "mesh.callContext(" + c.call.svc.name + "." + c.call.ep.name + ")"
}

// CallFromContext returns the call being served in ctx: the context a
// function gets, or one derived from it.
func CallFromContext(ctx context.Context) (*Call, bool) {
	c, ok := ctx.Value(callKey{}).(*Call)
	return c, ok
}
