package broker

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// A StartOption configures [Start]: the embedded server and the connections
// the Broker hands out.
type StartOption interface {
	applyToStart(*startConfig)
}

// A ConnectOption configures [Connect]: the connections to an existing NATS
// deployment.
type ConnectOption interface {
	applyToConnect(*connectConfig)
}

// An Option configures both [Start] and [Connect].
type Option interface {
	StartOption
	ConnectOption
}

// connConfig is what Start and Connect share: how the Broker's own
// connections behave and report.
type connConfig struct {
	name         string
	logger       *slog.Logger
	hook         func(Event)
	natsOpts     []nats.Option
	reconnectBuf int
	backoffMin   time.Duration
	backoffMax   time.Duration
}

// Defaults of the connection settings, documented on the options that change
// them.
const (
	defaultConnName   = "funcmesh"
	defaultBackoffMin = 100 * time.Millisecond
	defaultBackoffMax = 2 * time.Second
)

func defaultConnConfig() connConfig {
	return connConfig{
		name:       defaultConnName,
		backoffMin: defaultBackoffMin,
		backoffMax: defaultBackoffMax,
	}
}

// sharedOption is an Option: a change to connConfig, which both configs embed.
type sharedOption func(*connConfig)

func (o sharedOption) applyToStart(c *startConfig)     { o(&c.conn) }
func (o sharedOption) applyToConnect(c *connectConfig) { o(&c.conn) }

// WithName sets the client name of the host's connection ([Broker.Conn]),
// which the server shows in its monitoring. The default is "funcmesh".
func WithName(name string) Option {
	return sharedOption(func(c *connConfig) { c.name = name })
}

// WithLogger sends the connection-state events of every connection the Broker
// owns (see [Event]) and, for [Start], the embedded server's own log to l.
// The default, like a nil l, is silence.
func WithLogger(l *slog.Logger) Option {
	return sharedOption(func(c *connConfig) { c.logger = l })
}

// WithEventHook calls hook with every connection-state [Event] of every
// connection the Broker owns: disconnected, reconnected, closed, lame duck,
// asynchronous errors. The hook runs on the connection's callback goroutine,
// so it must return quickly. The default is no hook.
func WithEventHook(hook func(Event)) Option {
	return sharedOption(func(c *connConfig) { c.hook = hook })
}

// WithNATSOptions appends nats.go options to every connection the Broker
// opens, after the Broker's own (so they win) and before the ones given to
// [Broker.NewConn]. Replacing the disconnect, reconnect, closed, lame-duck or
// error handlers this way stops the matching [Event]s. The default is none.
func WithNATSOptions(opts ...nats.Option) Option {
	return sharedOption(func(c *connConfig) { c.natsOpts = append(c.natsOpts, opts...) })
}

// WithReconnectBuffer sets how many bytes a connection buffers while it is
// reconnecting, to send once it is back. The default, 0, buffers nothing:
// a publish or request made while the connection is down fails at once
// (nats.ErrReconnectBufExceeded) instead of being replayed seconds later,
// when its caller has given up. That is what a request/reply mesh wants: a
// call during an outage is answered "unavailable" now, not executed later.
// A negative size is an error.
func WithReconnectBuffer(bytes int) Option {
	return sharedOption(func(c *connConfig) { c.reconnectBuf = bytes })
}

// WithReconnectBackoff sets the wait between reconnect rounds: it starts at
// min and doubles up to max, each wait drawn at random from its upper half
// (jitter) so that many clients of a restarted server do not come back in
// step. Connections retry forever until the Broker is shut down. The
// defaults are 100ms and 2s. min must be positive and not above max.
func WithReconnectBackoff(min, max time.Duration) Option {
	return sharedOption(func(c *connConfig) { c.backoffMin, c.backoffMax = min, max })
}

// startOption and connectOption adapt functions to the single-mode
// interfaces.
type startOption func(*startConfig)

func (o startOption) applyToStart(c *startConfig) { o(c) }

type connectOption func(*connectConfig)

func (o connectOption) applyToConnect(c *connectConfig) { o(c) }
