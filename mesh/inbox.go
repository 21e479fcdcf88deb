package mesh

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/funcmesh/funcmesh/transport"
)

// inbox receives the answers to the routed calls that the functions of one
// service make over one connection: one subscription on
// _INBOX_<service>.<random>.*, whatever the connection's own inbox
// prefix, because a router relays an answer only to a reply subject under
// the calling service's inbox (see [Router]).
type inbox struct {
	nc     *nats.Conn
	prefix string // _INBOX_<service>.<nuid>.
	sub    *nats.Subscription

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
}

type inboxKey struct {
	nc      *nats.Conn
	service string
}

// inbox returns the client's inbox for service's calls on nc, making it on
// first use.
func (c *Client) inbox(nc *nats.Conn, service string) (*inbox, error) {
	key := inboxKey{nc, service}
	if ib, ok := c.inboxes.Load(key); ok {
		return ib.(*inbox), nil
	}
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	if ib, ok := c.inboxes.Load(key); ok {
		return ib.(*inbox), nil
	}
	ib := &inbox{nc: nc, prefix: transport.InboxPrefix(service) + "." + nuid.Next() + ".", waiting: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(ib.prefix+"*", ib.deliver)
	if err != nil {
		return nil, err
	}
	ib.sub = sub
	c.inboxes.Store(key, ib)
	return ib, nil
}

func (ib *inbox) deliver(m *nats.Msg) {
	token := m.Subject[len(ib.prefix):]
	ib.mu.Lock()
	if ch, ok := ib.waiting[token]; ok {
		delete(ib.waiting, token)
		ch <- m // buffered, and only one answer is taken per token
	}
	ib.mu.Unlock()
}

// token returns a reply token: random, though nothing depends on it being
// unguessable (only the host may publish under a service's inbox).
func token() string { return strconv.FormatUint(rand.Uint64(), 36) }

// request publishes msg with a reply subject of the inbox and waits for
// the answer until ctx ends.
func (ib *inbox) request(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	tok := token()
	ch := make(chan *nats.Msg, 1)
	ib.mu.Lock()
	for ib.waiting[tok] != nil {
		tok = token()
	}
	ib.waiting[tok] = ch
	ib.mu.Unlock()
	msg.Reply = ib.prefix + tok
	if err := ib.nc.PublishMsg(msg); err != nil {
		ib.abandon(tok)
		return nil, err
	}
	select {
	case m := <-ch:
		if isNoResponders(m) {
			return nil, nats.ErrNoResponders
		}
		return m, nil
	case <-ctx.Done():
		ib.abandon(tok)
		return nil, ctx.Err()
	}
}

// abandon forgets a token whose answer is no longer awaited.
func (ib *inbox) abandon(tok string) {
	ib.mu.Lock()
	delete(ib.waiting, tok)
	ib.mu.Unlock()
}

// isNoResponders reports whether m is the server's "no responders" status
// message for a request nobody subscribed to.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header != nil && m.Header.Get("Status") == "503"
}

var errNoRouter = errors.New("mesh: no router took the nested call")
