package broker

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
)

// EventKind says what happened to a connection.
type EventKind int

// The kinds of [Event].
const (
	// EventDisconnected: the connection to the server was lost; it is
	// being re-established. Err is the cause, when known.
	EventDisconnected EventKind = iota + 1
	// EventReconnectFailed: one reconnect attempt failed; more follow.
	EventReconnectFailed
	// EventReconnected: the connection is back, subscriptions restored.
	EventReconnected
	// EventLameDuck: the server announced it is shutting down; the client
	// will move to another server of the cluster.
	EventLameDuck
	// EventError: an asynchronous error, such as a permissions violation
	// or a slow consumer. Subject names the subscription, when one is
	// concerned.
	EventError
	// EventClosed: the connection is closed for good.
	EventClosed
)

var eventNames = [...]string{
	EventDisconnected:    "disconnected",
	EventReconnectFailed: "reconnect_failed",
	EventReconnected:     "reconnected",
	EventLameDuck:        "lame_duck",
	EventError:           "error",
	EventClosed:          "closed",
}

// String returns the kind's name in snake case, e.g. "disconnected".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Event is a change in the state of a connection the Broker owns, delivered
// to the hook of [WithEventHook] and logged to the logger of [WithLogger].
type Event struct {
	Kind EventKind
	// Conn is the connection's client name: "funcmesh" (see [WithName])
	// for [Broker.Conn], the name given to [Broker.NewConn] otherwise.
	Conn string
	// URL is the server the connection is connected to, with any password
	// removed; empty while it is not connected.
	URL string
	// Subject is the subject of the subscription an EventError concerns.
	Subject string
	// Err is the error, for EventDisconnected, EventReconnectFailed and
	// EventError; nil otherwise.
	Err error
}

// level is the slog level an event is logged at.
func (e Event) level() slog.Level {
	switch e.Kind {
	case EventDisconnected, EventLameDuck:
		return slog.LevelWarn
	case EventError:
		return slog.LevelError
	case EventReconnected:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// emit hands an event to the hook and the logger.
func (c *connConfig) emit(e Event) {
	if c.hook != nil {
		c.hook(e)
	}
	if c.logger == nil || !c.logger.Enabled(context.Background(), e.level()) {
		return
	}
	attrs := []slog.Attr{slog.String("conn", e.Conn)}
	if e.URL != "" {
		attrs = append(attrs, slog.String("url", e.URL))
	}
	if e.Subject != "" {
		attrs = append(attrs, slog.String("subject", e.Subject))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	c.logger.LogAttrs(context.Background(), e.level(), "broker: connection "+e.Kind.String(), attrs...)
}

// eventOptions are the nats.go handlers that turn connection callbacks into
// events.
func (c *connConfig) eventOptions() []nats.Option {
	ev := func(kind EventKind, nc *nats.Conn, err error) Event {
		return Event{Kind: kind, Conn: nc.Opts.Name, URL: nc.ConnectedUrlRedacted(), Err: err}
	}
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			// nats.go also reports a disconnect when the connection is
			// closed on purpose; EventClosed says that.
			if !nc.IsClosed() {
				c.emit(ev(EventDisconnected, nc, err))
			}
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			c.emit(ev(EventReconnectFailed, nc, err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.emit(ev(EventReconnected, nc, nil))
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			c.emit(ev(EventLameDuck, nc, nil))
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			e := ev(EventError, nc, err)
			if sub != nil {
				e.Subject = sub.Subject
			}
			c.emit(e)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			c.emit(ev(EventClosed, nc, nil))
		}),
	}
}
