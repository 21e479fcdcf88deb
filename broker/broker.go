package broker

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/transport"
)

// DefaultCloseTimeout bounds [Broker.Close].
const DefaultCloseTimeout = 10 * time.Second

// ErrClosed is returned by a Broker's methods once it has been shut down.
var ErrClosed = errors.New("broker: closed")

// Broker is a NATS broker the host uses: an embedded nats-server started by
// [Start], or a connection to an existing NATS deployment made by
// [Connect]. Either way it hands out connections ([Broker.Conn],
// [Broker.NewConn]) and closes them all, then the embedded server, on
// [Broker.Shutdown]. Its methods are safe for concurrent use.
type Broker struct {
	cfg        connConfig
	srv        *server.Server // nil in connect mode
	auth       *serviceAuth   // nil without WithServiceAuth
	url        string         // what nats.Connect dials; "" in process
	dialOpts   []nats.Option  // how to reach the server: in process, auth, TLS
	maxPayload int64          // 0 in connect mode: ask the connection
	clientURL  string
	clusterURL string

	nc *nats.Conn

	keyOnce   sync.Once
	randomKey transport.ClaimsKey // ClaimsKey without WithServiceAuth

	mu       sync.Mutex
	conns    []*nats.Conn // every connection owned, the host's first
	closing  bool
	done     chan struct{} // closed when Shutdown has finished
	closeErr error
}

// connectHost opens the host's connection.
func (b *Broker) connectHost() error {
	b.done = make(chan struct{})
	nc, err := b.dial(b.cfg.name, nil)
	if err != nil {
		return err
	}
	b.nc = nc
	b.conns = append(b.conns, nc)
	return nil
}

// dial opens a connection with the Broker's settings, then the caller's
// options. Its errors lack the "broker: " prefix, which callers add.
func (b *Broker) dial(name string, extra []nats.Option) (*nats.Conn, error) {
	opts := make([]nats.Option, 0, 8+len(b.dialOpts)+len(b.cfg.natsOpts)+len(extra))
	opts = append(opts,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(b.cfg.backoff),
		nats.ReconnectBufSize(b.cfg.natsReconnectBuf()),
	)
	opts = append(opts, b.cfg.eventOptions()...)
	opts = append(opts, b.dialOpts...)
	opts = append(opts, b.cfg.natsOpts...)
	opts = append(opts, extra...)
	if b.auth != nil {
		if err := b.checkCredentials(opts); err != nil {
			return nil, fmt.Errorf("connect %q: %w", name, err)
		}
	}
	nc, err := nats.Connect(b.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %q: %w", name, err)
	}
	return nc, nil
}

// checkCredentials rejects wrong credentials before an in-process
// connection is tried: over an in-memory pipe, nats-server's refusal only
// reaches the client after its 10-second write deadline, because the
// client is still writing its PING.
func (b *Broker) checkCredentials(opts []nats.Option) error {
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	if _, ok := b.auth.authenticate(o.User, o.Password); !ok {
		return fmt.Errorf("%w: credentials for user %q rejected", nats.ErrAuthorization, o.User)
	}
	return nil
}

// Conn returns the host's connection. It is the one the gateway should
// use; with [WithServiceAuth] it has the host's permissions. Do not close
// it: [Broker.Shutdown] does.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// NewConn opens another connection to the broker, named name (as servers
// show it in monitoring), for example one per service running in this
// process, so that a slow consumer on one does not stall the others. opts
// are applied after the Broker's own settings, so a service can pass its
// own credentials: b.NewConn("payments", creds.Option()). Without them the
// connection has the host's identity.
//
// The Broker owns the connection: [Broker.Shutdown] drains it unless the
// caller has closed it already.
func (b *Broker) NewConn(name string, opts ...nats.Option) (*nats.Conn, error) {
	b.mu.Lock()
	closing := b.closing
	b.mu.Unlock()
	if closing {
		return nil, ErrClosed
	}
	nc, err := b.dial(name, opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		nc.Close()
		return nil, ErrClosed
	}
	// Forget connections their users have closed, so that a process
	// that opens and closes many does not grow this list forever.
	live := b.conns[:0]
	for _, c := range b.conns {
		if !c.IsClosed() {
			live = append(live, c)
		}
	}
	clear(b.conns[len(live):])
	b.conns = append(live, nc)
	return nc, nil
}

// Server returns the embedded nats-server, or nil when the Broker was made
// by [Connect].
func (b *Broker) Server() *server.Server { return b.srv }

// MaxPayload returns the largest message body, in bytes, the server accepts:
// the embedded server's setting, or what the connected server announced.
// The gateway never reads a request body above this.
func (b *Broker) MaxPayload() int64 {
	if b.maxPayload > 0 {
		return b.maxPayload
	}
	return b.nc.MaxPayload()
}

// ClientURL returns the URL clients in other processes connect to: the
// embedded server's listener (loopback when it listens on every interface),
// or, in connect mode, the server the host's connection is connected to,
// without its password. It is empty for an embedded server that does not
// listen ([WithListen]).
func (b *Broker) ClientURL() string {
	if b.srv != nil {
		return b.clientURL
	}
	return b.nc.ConnectedUrlRedacted()
}

// ClusterURL returns the route URL of the embedded server's cluster
// listener, for other nodes' [Cluster.Routes]; empty without [WithCluster].
func (b *Broker) ClusterURL() string { return b.clusterURL }

// ServiceCredentials returns the credentials of a service for an embedded
// server with [WithServiceAuth]: the user is the service's name, the
// password is derived from the secret (see [ServiceAuth]). It fails with
// [ErrNoServiceAuth] without service authorization, and for a name that
// [transport.ValidateName] rejects.
func (b *Broker) ServiceCredentials(service string) (Credentials, error) {
	if b.auth == nil {
		return Credentials{}, ErrNoServiceAuth
	}
	if err := transport.ValidateName(service); err != nil {
		return Credentials{}, fmt.Errorf("broker: service credentials: %w", err)
	}
	return b.auth.serviceCredentials(service), nil
}

// HostCredentials returns the host's credentials ([HostUser]), which may do
// anything, for a gateway in another process; the Broker's own connections
// use them already. It fails with [ErrNoServiceAuth] without
// [WithServiceAuth].
func (b *Broker) HostCredentials() (Credentials, error) {
	if b.auth == nil {
		return Credentials{}, ErrNoServiceAuth
	}
	return b.auth.hostCredentials(), nil
}

// ClaimsKey returns the key with which the host signs the claims it
// forwards with calls (see transport.ClaimsSigner, and mesh.WithClaimsSigner
// for the gateway and the router). With [WithServiceAuth] it is derived
// from the secret, so every host process and cluster node sharing the
// secret signs and verifies alike, and changing the secret changes the key
// and its ID; keep the old key as a previous one of the signer for the
// calls in flight. Without it the key is random, made once per Broker:
// right for one host process; give several host processes a key of your
// own.
func (b *Broker) ClaimsKey() transport.ClaimsKey {
	if b.auth != nil {
		return b.auth.claimsKey()
	}
	b.keyOnce.Do(func() {
		secret := make([]byte, 32)
		crand.Read(secret) // never fails (crypto/rand)
		b.randomKey = transport.ClaimsKey{ID: "random-" + strconv.FormatUint(rand.Uint64()%1e9, 36), Secret: secret}
	})
	return b.randomKey
}

// Ready returns nil once the host's connection is connected and the server
// has answered a round trip, and an error if ctx ends first or the Broker
// is shut down. After a disconnect it waits for the reconnect.
func (b *Broker) Ready(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		switch {
		case b.nc.IsClosed():
			return ErrClosed
		case b.nc.IsConnected():
			if err := b.flush(ctx); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: not ready: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// flush makes a round trip to the server within ctx, or a second if ctx
// has no deadline.
func (b *Broker) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

// Shutdown drains every connection the Broker owns (subscriptions stop
// taking messages, messages already received are handled, pending
// publishes are flushed), then stops the embedded server. When ctx ends
// first, the connections still draining are closed, the server is stopped
// at once, and ctx's error is returned. Shut the HTTP server down before
// the Broker: draining the host's connection ends the calls it is waiting
// for. Calling Shutdown again waits for the first call and returns its
// result.
//
// nats-server's lame-duck mode is not used: it only tells clients that
// connect over TCP to move elsewhere, and does nothing for the in-process
// connections an embedded broker mostly has.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		select {
		case <-b.done:
			return b.closeErr
		case <-ctx.Done():
			return fmt.Errorf("broker: shutdown: %w", ctx.Err())
		}
	}
	b.closing = true
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()

	err := drainAll(ctx, conns)
	if b.srv != nil {
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			b.srv.Shutdown()
			b.srv.WaitForShutdown()
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("broker: shutdown: stopping nats-server: %w", ctx.Err())
			}
		}
	}
	b.closeErr = err
	close(b.done)
	return err
}

// Close shuts the Broker down ([Broker.Shutdown]) within
// [DefaultCloseTimeout].
func (b *Broker) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCloseTimeout)
	defer cancel()
	return b.Shutdown(ctx)
}

// drainAll drains the connections in parallel and waits until all are
// closed or ctx ends, then closes whatever is left.
func drainAll(ctx context.Context, conns []*nats.Conn) error {
	var wg sync.WaitGroup
	for _, nc := range conns {
		closed := nc.StatusChanged(nats.CLOSED)
		if nc.IsClosed() {
			nc.RemoveStatusListener(closed)
			continue
		}
		// Drain fails on a connection that is reconnecting (it closes it
		// instead) or already closed; either way it ends closed.
		_ = nc.Drain()
		wg.Go(func() {
			defer nc.RemoveStatusListener(closed)
			select {
			case <-closed:
			case <-ctx.Done():
				nc.Close()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("broker: shutdown: draining connections: %w", err)
	}
	return nil
}

// validate checks the connection settings.
func (c *connConfig) validate() error {
	if c.reconnectBuf < 0 {
		return fmt.Errorf("broker: WithReconnectBuffer(%d): negative size", c.reconnectBuf)
	}
	if c.backoffMin <= 0 || c.backoffMax < c.backoffMin {
		return fmt.Errorf("broker: WithReconnectBackoff(%v, %v): want 0 < min <= max", c.backoffMin, c.backoffMax)
	}
	return nil
}

// natsReconnectBuf maps our "0 means no buffer" onto nats.go's "-1 means
// no buffer" (its 0 means 8 MiB).
func (c *connConfig) natsReconnectBuf() int {
	if c.reconnectBuf == 0 {
		return -1
	}
	return c.reconnectBuf
}

// backoff is the wait before reconnect round attempts: exponential from
// backoffMin to backoffMax, drawn from the upper half of that.
func (c *connConfig) backoff(attempts int) time.Duration {
	d := c.backoffMax
	if n := attempts - 1; n < 30 {
		if e := c.backoffMin << max(n, 0); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}
