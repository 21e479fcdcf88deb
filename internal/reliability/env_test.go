package reliability_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/transport"
)

// paramsPolicy reads input.params, so the authz middleware decodes every
// body: it allows signed-in callers unless the params say otherwise.
const paramsPolicy = `package funcmesh.authz

default allow := false

allow if {
	input.auth.sub
	not forbidden
}

forbidden if input.params.forbidden == true

forbidden if input.params.n > 100

status := 401 if input.auth == null
`

// signedIn is a rule config that allows signed-in callers and never
// reads params: bodies pass through the chain untouched.
const signedIn = `{"services": {"default": {"functions": {"default": {"rule": {"rule": "authenticated"}}}}}}`

// hostile is a broker (listening on loopback, for echosvc) with two gateway chains over the same connection,
// one whose policy reads params and one whose policy does not, a
// recorder of every message on the broker, and a catch-all function on
// fn.> that answers with what it was sent.
type hostile struct {
	b      *broker.Broker
	rec    *recorder
	dump   *catchAll
	params *gateway // policy reads input.params
	plain  *gateway // policy does not
	bare   *gateway // the gateway alone (RequestID only), no authz to check names first
	tok    string   // a valid token for sub "u1"
}

func newHostile(t testing.TB, opts ...broker.StartOption) *hostile {
	t.Helper()
	ctx := t.Context()
	b, err := broker.Start(ctx, append([]broker.StartOption{broker.WithListen("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	h := &hostile{b: b, tok: token(t, "u1", "role", "user")}
	h.rec = newRecorder(t, b)
	h.dump = newCatchAll(t, b)
	h.params = newGateway(t, b.Conn(), gatewayConfig{Policy: []authz.Option{authz.Module("params.rego", paramsPolicy)}})
	h.plain = newGateway(t, b.Conn(), gatewayConfig{Policy: []authz.Option{authz.RulesJSON([]byte(signedIn))}})
	h.bare = newGateway(t, b.Conn(), gatewayConfig{Bare: true})
	return h
}

// recorder records every message published on a broker, through a
// subscription to ">".
type recorder struct {
	pub   *nats.Conn // the gateways' connection, whose messages sync orders
	mu    sync.Mutex
	msgs  []*nats.Msg
	marks chan string
	n     int
}

func newRecorder(t testing.TB, b *broker.Broker) *recorder {
	t.Helper()
	nc, err := b.NewConn("recorder")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{pub: b.Conn(), marks: make(chan string, 64)}
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "_mark.") {
			r.marks <- m.Subject
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// sync returns the messages recorded since the last sync, once every
// message the gateways published before it has arrived: a marker
// published after them on the same connection arrives after them.
func (r *recorder) sync(t testing.TB) []*nats.Msg {
	t.Helper()
	r.n++
	mark := fmt.Sprintf("_mark.%d", r.n)
	if err := r.pub.Publish(mark, nil); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case m := <-r.marks:
			if m != mark {
				continue
			}
			r.mu.Lock()
			msgs := r.msgs
			r.msgs = nil
			r.mu.Unlock()
			return msgs
		case <-timer.C:
			t.Fatal("recorder: the marker did not arrive in 10s")
		}
	}
}

// subjects returns the subjects of msgs but replies (to inboxes): the
// calls, and the discovery probes ($SRV.INFO.<service>) a call no
// instance answered makes.
func subjects(msgs []*nats.Msg) []string {
	var s []string
	for _, m := range msgs {
		if !strings.HasPrefix(m.Subject, "_INBOX.") {
			s = append(s, m.Subject)
		}
	}
	return s
}

// catchAll is a function on every subject under fn. but fn.svc.> (left
// to echosvc), written against the wire contract with plain nats.go as a
// service in another language would be: it answers with the subject,
// headers and params it got.
type catchAll struct {
	runs atomic.Int64
	all  atomic.Bool // answer fn.svc.> too: no echosvc runs
}

// dumped is what the catch-all got.
type dumped struct {
	Subject string
	Header  nats.Header
	Params  []byte
}

// dumpWire is how the catch-all answers: the header values as bytes
// (base64 in JSON), so that any byte a header holds survives.
type dumpWire struct {
	Subject string              `json:"subject"`
	Header  map[string][][]byte `json:"header"`
	Params  []byte              `json:"params"`
}

func newCatchAll(t testing.TB, b *broker.Broker) *catchAll {
	t.Helper()
	nc, err := b.NewConn("catchall")
	if err != nil {
		t.Fatal(err)
	}
	c := &catchAll{}
	if _, err := nc.Subscribe("fn.>", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "fn.svc.") && !c.all.Load() {
			return
		}
		c.runs.Add(1)
		w := dumpWire{Subject: m.Subject, Header: map[string][][]byte{}, Params: m.Data}
		for k, vs := range m.Header {
			for _, v := range vs {
				w.Header[k] = append(w.Header[k], []byte(v))
			}
		}
		out, _ := json.Marshal(w)
		_ = m.Respond(out)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func decodeDump(a answer) (dumped, error) {
	if a.status != 200 {
		return dumped{}, fmt.Errorf("not a dump: %v", a)
	}
	var w dumpWire
	if err := json.Unmarshal(a.body, &w); err != nil {
		return dumped{}, err
	}
	d := dumped{Subject: w.Subject, Header: nats.Header{}, Params: w.Params}
	for k, vs := range w.Header {
		for _, v := range vs {
			d.Header[k] = append(d.Header[k], string(v))
		}
	}
	return d, nil
}

// contractHeaders are the only headers a call from the gateway may carry.
var contractHeaders = map[string]bool{
	transport.HeaderAuth:        true,
	transport.HeaderAuthSig:     true,
	transport.HeaderDeadline:    true,
	transport.HeaderRequestID:   true,
	transport.HeaderContentType: true,
}

// raw sends a request written byte for byte, so that request targets and
// headers the http package would refuse to send go on the wire as they
// are; hdr are "Name: value" lines.
func (g *gateway) raw(method, target string, body []byte, hdr ...string) answer {
	start := time.Now()
	c, err := net.DialTimeout("tcp", g.srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		return answer{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(g.timeout + slack))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: gateway\r\n", method, target)
	for _, h := range hdr {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	b.Write(body)
	if _, err := c.Write(b.Bytes()); err != nil {
		return answer{err: err, dur: time.Since(start)}
	}
	res, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return answer{err: err, dur: time.Since(start)}
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: rb, dur: time.Since(start), err: err}
}
