package authz

import (
	"fmt"
	"io"
	"net/http"

	"github.com/open-policy-agent/opa/v1/rego"
)

// MaxHTTPAnswer bounds the body of an answer that a policy reads over
// HTTP: a webhook rule's, and that of any http.send in hand-written Rego.
// A longer answer is an error of http.send (a webhook rule denies; with
// raise_error, the decision fails and so denies), without reading more of
// it than the bound.
const MaxHTTPAnswer = 1 << 20

// boundedHTTP is the evaluation option that gives http.send a transport
// bounding the answers it reads by [MaxHTTPAnswer]. OPA reads an answer
// whole with io.ReadAll: without it, a webhook (or whatever answers at
// its address) could make every decision hold as much memory as it sends.
var boundedHTTP = rego.EvalHTTPRoundTripper(func(t *http.Transport) http.RoundTripper {
	if t == nil {
		// What http.send would use: its client's default transport.
		return boundedTransport{http.DefaultTransport}
	}
	return boundedTransport{t}
})

// boundedTransport refuses answers longer than MaxHTTPAnswer.
type boundedTransport struct{ next http.RoundTripper }

func (b boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > MaxHTTPAnswer {
		resp.Body.Close()
		return nil, errAnswerTooLong(resp.ContentLength)
	}
	resp.Body = &boundedBody{rc: resp.Body, left: MaxHTTPAnswer}
	return resp, nil
}

func errAnswerTooLong(n int64) error {
	if n < 0 {
		return fmt.Errorf("authz: http.send: answer longer than %d bytes", MaxHTTPAnswer)
	}
	return fmt.Errorf("authz: http.send: answer of %d bytes, longer than %d", n, MaxHTTPAnswer)
}

// boundedBody reads at most left bytes and fails, rather than ends, when
// the body goes on: a cut answer must not pass for a whole one.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the bound from a longer one.
		var one [1]byte
		if n, _ := io.ReadFull(b.rc, one[:]); n > 0 {
			return 0, errAnswerTooLong(-1)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }
