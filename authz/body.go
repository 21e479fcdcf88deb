package authz

import (
	"bytes"
	"io"
)

// Body is the request body after the middleware has read it to decode
// input.params: next gets it as r.Body, readable from the start. Bytes
// gives the whole body without copying it, so a handler that needs it in
// one piece can skip reading it again: Body is a mesh.BytesBody, which the
// mesh gateway sends as the params as it is.
type Body struct {
	data []byte
	r    bytes.Reader
}

// NewBody returns a Body over data, which it does not copy.
func NewBody(data []byte) *Body {
	b := &Body{data: data}
	b.r.Reset(data)
	return b
}

// Bytes returns the whole body, whatever has been read of it. The slice is
// shared: do not modify it.
func (b *Body) Bytes() []byte { return b.data }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) { return b.r.Read(p) }

// WriteTo implements io.WriterTo, for io.Copy.
func (b *Body) WriteTo(w io.Writer) (int64, error) { return b.r.WriteTo(w) }

// Close implements io.Closer; it does nothing.
func (b *Body) Close() error { return nil }
