package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

type connectConfig struct {
	conn      connConfig
	credsFile string
	user      string
	password  string
	token     string
	tls       *tls.Config
}

// WithCredentialsFile authenticates with a NATS credentials file (a user
// JWT and its nkey seed, as "nsc" and Synadia Cloud issue them). The file
// must be readable when [Connect] is called; it is read again on every
// reconnect. The default is no credentials.
func WithCredentialsFile(path string) ConnectOption {
	return connectOption(func(c *connectConfig) { c.credsFile = path })
}

// WithUserInfo authenticates with a user name and password, such as
// [Credentials] from a funcmesh broker. The default is none.
func WithUserInfo(user, password string) ConnectOption {
	return connectOption(func(c *connectConfig) { c.user, c.password = user, password })
}

// WithToken authenticates with a token. The default is none.
func WithToken(token string) ConnectOption {
	return connectOption(func(c *connectConfig) { c.token = token })
}

// WithTLS connects over TLS with cfg (root CAs, client certificates). The
// default is TLS only for "tls://" URLs or when the server requires it,
// verified against the system's roots.
func WithTLS(cfg *tls.Config) ConnectOption {
	return connectOption(func(c *connectConfig) { c.tls = cfg })
}

// Connect connects the host to an existing NATS server or cluster at urls
// ("nats://host:port", "tls://…", "ws://…", "wss://…"; a URL may carry
// "user:password@"), instead of embedding one. Every connection the Broker
// opens reconnects forever with backoff ([WithReconnectBackoff]) and, by
// default, buffers nothing while disconnected, so calls fail fast during an
// outage ([WithReconnectBuffer]). Connection-state changes go to
// [WithEventHook] and [WithLogger].
//
// Connect fails if no server can be reached now (ctx bounds the attempt),
// and for bad configuration: no URLs, a malformed URL, an unreadable
// credentials file, more than one kind of authentication.
func Connect(ctx context.Context, urls []string, opts ...ConnectOption) (*Broker, error) {
	cfg := connectConfig{conn: defaultConnConfig()}
	for _, o := range opts {
		if o != nil {
			o.applyToConnect(&cfg)
		}
	}
	if err := cfg.conn.validate(); err != nil {
		return nil, err
	}
	dialOpts, err := cfg.dialOptions(urls)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("broker: connect: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		dialOpts = append(dialOpts, nats.Timeout(min(time.Until(dl), nats.DefaultTimeout)))
	}
	b := &Broker{cfg: cfg.conn, url: strings.Join(urls, ","), dialOpts: dialOpts}
	if err := b.connectHost(); err != nil {
		return nil, fmt.Errorf("broker: Connect %s: %w", redactURLs(urls), err)
	}
	return b, nil
}

// redactURLs lists URLs for an error message, without passwords.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		if u, err := url.Parse(s); err == nil {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, ",")
}

func (c *connectConfig) dialOptions(urls []string) ([]nats.Option, error) {
	if len(urls) == 0 {
		return nil, errors.New("broker: Connect: no server URLs")
	}
	for _, s := range urls {
		if _, err := parseURL(s, "nats", "tls", "ws", "wss"); err != nil {
			return nil, fmt.Errorf("broker: Connect: %w", err)
		}
	}
	var opts []nats.Option
	kinds := 0
	if c.credsFile != "" {
		if err := readable(c.credsFile); err != nil {
			return nil, fmt.Errorf("broker: WithCredentialsFile: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.credsFile))
		kinds++
	}
	if c.user != "" || c.password != "" {
		opts = append(opts, nats.UserInfo(c.user, c.password))
		kinds++
	}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
		kinds++
	}
	if kinds > 1 {
		return nil, errors.New("broker: Connect: use one of WithCredentialsFile, WithUserInfo and WithToken")
	}
	if c.tls != nil {
		opts = append(opts, nats.Secure(c.tls))
	}
	return opts, nil
}
