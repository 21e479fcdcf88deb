package mesh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// The function's context makes its timer only when asked for Done; these
// tests check it behaves as a context.WithDeadline would whichever way a
// function uses it.

func TestFunctionContextBeforeDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	leaked := make(chan context.Context, 1)
	e.service(t, "svc", map[string]mesh.Handler{
		"f": mesh.HandlerFunc(func(ctx context.Context, c *mesh.Call) ([]byte, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if dl, ok := ctx.Deadline(); !ok || !dl.Equal(c.Deadline()) {
				return nil, transport.Errorf(transport.CodeInternal, "Deadline() = %v, %v; want %v", dl, ok, c.Deadline())
			}
			if got, ok := mesh.CallFromContext(ctx); !ok || got != c {
				return nil, transport.NewError(transport.CodeInternal, "CallFromContext lost the call")
			}
			// A derived context inherits the deadline and stays live.
			child, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			if dl, _ := child.Deadline(); !dl.Equal(c.Deadline()) {
				return nil, transport.Errorf(transport.CodeInternal, "child deadline %v; want %v", dl, c.Deadline())
			}
			if _, ok := mesh.CallFromContext(child); !ok {
				return nil, transport.NewError(transport.CodeInternal, "CallFromContext(child) lost the call")
			}
			select {
			case <-child.Done():
				return nil, transport.NewError(transport.CodeInternal, "child done before the deadline")
			default:
			}
			leaked <- ctx
			return []byte(`"ok"`), nil
		}),
	})
	out, err := e.client.Invoke(context.Background(), "svc", "f", nil)
	if err != nil || string(out) != `"ok"` {
		t.Fatalf("Call: %s, %v", out, err)
	}
	// Once the function has returned, its context has ended, as the cancel
	// of a context.WithDeadline would end it.
	ctx := <-leaked
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the context of a function that returned is not done")
	}
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after return: %v; want context.Canceled", err)
	}
}

func TestFunctionContextDeadlineWithoutDone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	type seen struct{ err, cause error }
	got := make(chan seen, 1)
	e.service(t, "svc", map[string]mesh.Handler{
		// Never calls Done: polls Err, as a loop over work items would.
		"poll": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			for i := 0; ctx.Err() == nil && i < 10_000; i++ {
				time.Sleep(time.Millisecond) // the work between two checks
			}
			got <- seen{ctx.Err(), context.Cause(ctx)}
			return nil, ctx.Err()
		}),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.client.Invoke(ctx, "svc", "poll", nil)
	if code := transport.CodeOf(err); code != transport.CodeDeadlineExceeded {
		t.Errorf("Call: %v (code %s); want %s", err, code, transport.CodeDeadlineExceeded)
	}
	s := <-got
	if !errors.Is(s.err, context.DeadlineExceeded) {
		t.Errorf("Err: %v; want context.DeadlineExceeded", s.err)
	}
	if !errors.Is(s.cause, context.DeadlineExceeded) {
		t.Errorf("context.Cause: %v; want context.DeadlineExceeded", s.cause)
	}
}

func TestFunctionContextDerivedEndsAtDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	got := make(chan error, 2)
	e.service(t, "svc", map[string]mesh.Handler{
		"wait": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			stopped := make(chan struct{})
			stop := context.AfterFunc(ctx, func() { close(stopped) })
			defer stop()
			<-child.Done()
			<-stopped
			got <- child.Err()
			got <- ctx.Err()
			return nil, ctx.Err()
		}),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.client.Invoke(ctx, "svc", "wait", nil); transport.CodeOf(err) != transport.CodeDeadlineExceeded {
		t.Errorf("Call: %v; want code %s", err, transport.CodeDeadlineExceeded)
	}
	for _, what := range []string{"child", "function's context"} {
		if err := <-got; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Err %v; want context.DeadlineExceeded", what, err)
		}
	}
}

func TestFunctionContextHardStopWithoutDone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	started := make(chan struct{})
	got := make(chan error, 1)
	svc := e.service(t, "svc", map[string]mesh.Handler{
		"poll": mesh.HandlerFunc(func(ctx context.Context, _ *mesh.Call) ([]byte, error) {
			close(started)
			for i := 0; ctx.Err() == nil && i < 10_000; i++ {
				time.Sleep(time.Millisecond)
			}
			got <- ctx.Err()
			return nil, ctx.Err()
		}),
	})
	go func() { _, _ = e.client.Invoke(context.Background(), "svc", "poll", nil) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := svc.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop with a done context: %v; want context.Canceled", err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("function's context: %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a hard stop did not end the context of a function that polls Err")
	}
}
