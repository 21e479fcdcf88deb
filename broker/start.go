package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// MaxPayloadLimit is the largest max payload [WithMaxPayload] accepts: the
// size of nats-server's per-connection pending buffer, which a message can
// never exceed.
const MaxPayloadLimit = server.MAX_PENDING_SIZE

// DefaultMaxPayload is the largest message body the embedded server accepts
// unless [WithMaxPayload] says otherwise: nats-server's default, 1 MiB.
const DefaultMaxPayload = server.MAX_PAYLOAD_SIZE

type startConfig struct {
	conn       connConfig
	listen     string
	listenTLS  *tls.Config
	serverName string
	cluster    *Cluster
	leafs      []LeafRemote
	jetStream  bool
	storeDir   string
	maxPayload int
	auth       *ServiceAuth
}

// WithListen makes the embedded server accept client connections over TCP at
// addr, "host:port", so that services in other processes can connect
// (see [Broker.ClientURL]). Port 0 (or -1) picks a free port; an empty host
// listens on every interface, so use "127.0.0.1:0" to stay on loopback. The
// default is no listener at all: only connections made inside this process
// (by [Broker.Conn] and [Broker.NewConn]) reach the server, and no port is
// opened.
func WithListen(addr string) StartOption {
	return startOption(func(c *startConfig) { c.listen = addr })
}

// WithListenTLS makes the client listener of [WithListen] require TLS with
// cfg (which must hold the server's certificate; set ClientAuth to also
// verify clients' certificates). [Broker.ClientURL] then starts with
// "tls://". In-process connections are not affected. The default is no TLS:
// use TLS whenever the listener is reachable from other machines, since
// service passwords travel in the clear without it.
func WithListenTLS(cfg *tls.Config) StartOption {
	return startOption(func(c *startConfig) { c.listenTLS = cfg })
}

// WithServerName names the embedded server, as it appears to other cluster
// nodes and in monitoring. Names must differ within a cluster. The default is
// the server's generated ID.
func WithServerName(name string) StartOption {
	return startOption(func(c *startConfig) { c.serverName = name })
}

// WithCluster makes the embedded server a node of a NATS cluster (see
// [Cluster]). The default is a standalone server. A cluster node needs a
// client listener too ([WithListen]): nats-server does not start routing
// without one.
func WithCluster(cl Cluster) StartOption {
	return startOption(func(c *startConfig) { c.cluster = &cl })
}

// WithLeafNodes connects the embedded server as a leaf node to each remote
// (see [LeafRemote]): the app keeps its local server, and messages flow
// to and from a central NATS deployment. The default is no remotes.
func WithLeafNodes(remotes ...LeafRemote) StartOption {
	return startOption(func(c *startConfig) { c.leafs = append(c.leafs, remotes...) })
}

// WithJetStream turns on JetStream in the embedded server, storing streams
// under storeDir, which must not be empty and which the server creates if
// needed. The default is no JetStream.
func WithJetStream(storeDir string) StartOption {
	return startOption(func(c *startConfig) { c.jetStream, c.storeDir = true, storeDir })
}

// WithMaxPayload sets the largest message body, in bytes, the embedded server
// accepts ([Broker.MaxPayload] reports it). The default, like 0, is
// [DefaultMaxPayload]; a negative size or one above [MaxPayloadLimit] is an
// error.
func WithMaxPayload(bytes int) StartOption {
	return startOption(func(c *startConfig) { c.maxPayload = bytes })
}

// WithServiceAuth turns on per-service authorization in the embedded server
// (see [ServiceAuth]); every client then needs credentials from
// [Broker.ServiceCredentials] or [Broker.HostCredentials]. The Broker's own
// connections use the host's credentials by themselves. The default is no
// authorization: every client may publish and subscribe to anything.
func WithServiceAuth(a ServiceAuth) StartOption {
	return startOption(func(c *startConfig) { c.auth = &a })
}

// inProcessDialTimeout bounds the handshake of a connection to the
// embedded server.
const inProcessDialTimeout = 10 * time.Second

// Start runs an embedded nats-server in this process and connects the host
// to it. With no options it needs no configuration and opens no port:
// connections are made in memory. ctx bounds the start only; stop the
// Broker with [Broker.Shutdown] or [Broker.Close].
//
// Start returns an error, never panics, for bad configuration: a port in use,
// a malformed route or leaf URL, an unreadable credentials file, a negative
// size.
func Start(ctx context.Context, opts ...StartOption) (*Broker, error) {
	cfg := startConfig{conn: defaultConnConfig()}
	for _, o := range opts {
		if o != nil {
			o.applyToStart(&cfg)
		}
	}
	if err := cfg.conn.validate(); err != nil {
		return nil, err
	}
	sopts, err := cfg.serverOptions()
	if err != nil {
		return nil, err
	}
	var auth *serviceAuth
	if cfg.auth != nil {
		if auth, err = newServiceAuth(*cfg.auth); err != nil {
			return nil, err
		}
		sopts.CustomClientAuthentication = auth
	}

	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("broker: nats-server options: %w", err)
	}
	log := newServerLogger(cfg.conn.logger)
	srv.SetLoggerV2(log, log.debug, false, false)
	started := make(chan struct{})
	go func() {
		defer close(started)
		srv.Start()
	}()
	if err := waitReady(ctx, srv, log, started); err != nil {
		go func() {
			<-started
			srv.Shutdown()
		}()
		return nil, err
	}

	b := &Broker{
		cfg:        cfg.conn,
		srv:        srv,
		auth:       auth,
		maxPayload: int64(sopts.MaxPayload),
	}
	if !sopts.DontListen {
		b.clientURL = listenURL(sopts.Host, srv.Addr())
		if sopts.TLSConfig != nil {
			b.clientURL = "tls" + strings.TrimPrefix(b.clientURL, "nats")
		}
	}
	if sopts.Cluster.Port != 0 {
		b.clusterURL = listenURL(sopts.Cluster.Host, srv.ClusterAddr())
	}
	// An in-process handshake has no network to wait for: only a starved
	// scheduler (a loaded machine, the race detector) makes it slow, so
	// it gets longer than nats.go's 2 s default before it fails.
	b.dialOpts = []nats.Option{nats.InProcessServer(srv), nats.Timeout(inProcessDialTimeout)}
	if auth != nil {
		b.dialOpts = append(b.dialOpts, auth.hostCredentials().Option())
	}
	if err := b.connectHost(); err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return b, nil
}

// waitReady waits until srv accepts connections, a fatal error is logged
// (a port in use, JetStream failing to start) or ctx is done.
func waitReady(ctx context.Context, srv *server.Server, log *serverLogger, started <-chan struct{}) error {
	select {
	case err := <-log.fatal:
		return err
	case <-ctx.Done():
		return fmt.Errorf("broker: starting nats-server: %w", ctx.Err())
	case <-started:
	}
	for {
		select {
		case err := <-log.fatal:
			return err
		case <-ctx.Done():
			return fmt.Errorf("broker: starting nats-server: %w", ctx.Err())
		default:
		}
		if srv.ReadyForConnections(50 * time.Millisecond) {
			// A listener that failed after the check above logs before
			// readiness could be reported, so look once more.
			select {
			case err := <-log.fatal:
				return err
			default:
				return nil
			}
		}
	}
}

func (c *startConfig) serverOptions() (*server.Options, error) {
	o := &server.Options{
		ServerName: c.serverName,
		NoSigs:     true,
		DontListen: c.listen == "",
	}
	if c.listen != "" {
		host, port, err := parseListen(c.listen)
		if err != nil {
			return nil, fmt.Errorf("broker: WithListen: %w", err)
		}
		o.Host, o.Port = host, port
	}
	if c.listenTLS != nil {
		if c.listen == "" {
			return nil, errors.New("broker: WithListenTLS needs WithListen")
		}
		if len(c.listenTLS.Certificates) == 0 && c.listenTLS.GetCertificate == nil {
			return nil, errors.New("broker: WithListenTLS: the TLS config has no certificate")
		}
		o.TLSConfig, o.TLS = c.listenTLS, true
		o.TLSVerify = c.listenTLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	switch {
	case c.maxPayload < 0:
		return nil, fmt.Errorf("broker: WithMaxPayload(%d): negative size", c.maxPayload)
	case c.maxPayload > MaxPayloadLimit:
		return nil, fmt.Errorf("broker: WithMaxPayload(%d): above the limit of %d bytes", c.maxPayload, MaxPayloadLimit)
	case c.maxPayload == 0:
		o.MaxPayload = DefaultMaxPayload
	default:
		o.MaxPayload = int32(c.maxPayload)
	}
	if c.jetStream {
		if c.storeDir == "" {
			return nil, errors.New("broker: WithJetStream: empty store directory")
		}
		o.JetStream, o.StoreDir = true, c.storeDir
	}
	if c.cluster != nil {
		if c.listen == "" {
			return nil, errors.New("broker: WithCluster needs WithListen: nats-server does not start routing without a client listener")
		}
		if err := c.cluster.apply(o); err != nil {
			return nil, err
		}
	}
	for i, r := range c.leafs {
		lo, err := r.options()
		if err != nil {
			return nil, fmt.Errorf("broker: WithLeafNodes: remote %d: %w", i, err)
		}
		o.LeafNode.Remotes = append(o.LeafNode.Remotes, lo)
	}
	return o, nil
}

// parseListen splits "host:port" into what nats-server wants, with port 0 or
// -1 meaning a random free port.
func parseListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("address %q: port %q is not a number from 0 to 65535", addr, p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// listenURL is the nats:// URL of a bound listener. An unspecified host
// (all interfaces) is replaced by loopback so that the URL can be dialled.
func listenURL(host string, addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp == nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
