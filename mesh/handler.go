package mesh

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/funcmesh/funcmesh/transport"
)

// Handler is a function of a service. ServeCall returns the result, sent
// to the caller unchanged (JSON unless it calls [Call.SetReplyContentType]),
// or an error:
//
//   - a [*transport.Error] (anywhere in the chain) answers with its code,
//     status and message;
//   - the context's error once the deadline passed answers 504;
//   - any other error answers 500 with a generic message; its text goes
//     to the service's logger and error hook, never to the caller.
//
// A panic answers 500 and is reported the same way; the instance keeps
// serving. Return transport.CodeResourceExhausted (429) only for a call
// that had no effect: the contract lets clients send such a call again to
// another instance.
type Handler interface {
	ServeCall(ctx context.Context, c *Call) ([]byte, error)
}

// HandlerFunc adapts a plain function to a [Handler].
type HandlerFunc func(ctx context.Context, c *Call) ([]byte, error)

// ServeCall calls f(ctx, c).
func (f HandlerFunc) ServeCall(ctx context.Context, c *Call) ([]byte, error) {
	return f(ctx, c)
}

// Func adapts a typed function to a [Handler] that speaks JSON: the params
// are decoded into In (empty params leave In's zero value; malformed ones
// answer 400 saying what is wrong, without calling f) and the result is
// encoded from Out.
func Func[In, Out any](f func(context.Context, In) (Out, error)) Handler {
	return typedFunc[In, Out](f)
}

type typedFunc[In, Out any] func(context.Context, In) (Out, error)

func (f typedFunc[In, Out]) ServeCall(ctx context.Context, c *Call) ([]byte, error) {
	var in In
	if err := decodeParams(c.params, &in); err != nil {
		return nil, err
	}
	out, err := f(ctx, in)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, transport.WrapError(transport.CodeInternal, transport.DefaultMessage(transport.CodeInternal), fmt.Errorf("mesh: encoding the result of %s.%s: %w", c.Service(), c.Function(), err))
	}
	return b, nil
}

// PanicError is what the error hook and logger get when a function
// panics: the value it panicked with and the goroutine's stack.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements error.
func (e *PanicError) Error() string {
	return fmt.Sprintf("mesh: function panicked: %v", e.Value)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
