package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultClusterName is the cluster name of a node whose [Cluster] has none.
const DefaultClusterName = "funcmesh"

// Cluster makes the embedded server a node of a NATS cluster: the nodes
// connect to each other over routes, share subscriptions, and clients of any
// node reach services on every node. A node only needs the route URL of one
// running node to join; nodes tell each other about the rest.
//
// The route port carries every message between nodes unfiltered, so it must
// be reachable only by the other nodes: keep it on a private network, or set
// User and Password (or both) so that only nodes knowing them may join.
type Cluster struct {
	// Name is the cluster's name, the same on every node. Empty means
	// [DefaultClusterName].
	Name string

	// Listen is the "host:port" the node accepts routes on. It is
	// required. Port 0 picks a free port ([Broker.ClusterURL] reports it).
	Listen string

	// Advertise is the "host:port" other nodes should use to reach this
	// one, when it differs from Listen (NAT, containers). Empty means the
	// listen address.
	Advertise string

	// Routes are the route URLs of other nodes, "nats://host:port" (or
	// "nats-route://"). Listing the node's own URL is harmless. Empty
	// means this node waits for others to connect to it.
	Routes []string

	// User and Password, when set, are required of every route that
	// connects to this node, and are sent on the routes this node makes
	// (unless a route URL carries its own user info). All nodes must use
	// the same. Empty means routes are not authenticated.
	User, Password string
}

func (c *Cluster) apply(o *server.Options) error {
	o.Cluster.Name = c.Name
	if o.Cluster.Name == "" {
		o.Cluster.Name = DefaultClusterName
	}
	if c.Listen == "" {
		return errors.New("broker: WithCluster: Listen is required")
	}
	host, port, err := parseListen(c.Listen)
	if err != nil {
		return fmt.Errorf("broker: WithCluster: Listen: %w", err)
	}
	o.Cluster.Host, o.Cluster.Port = host, port
	o.Cluster.Advertise = c.Advertise
	if (c.User == "") != (c.Password == "") {
		return errors.New("broker: WithCluster: set both User and Password, or neither")
	}
	o.Cluster.Username, o.Cluster.Password = c.User, c.Password
	for _, r := range c.Routes {
		u, err := parseURL(r, "nats", "nats-route", "tls")
		if err != nil {
			return fmt.Errorf("broker: WithCluster: route: %w", err)
		}
		if c.User != "" && u.User == nil {
			u.User = url.UserPassword(c.User, c.Password)
		}
		o.Routes = append(o.Routes, u)
	}
	return nil
}

// LeafRemote is a NATS server (or cluster) the embedded server connects to
// as a leaf node. Subscriptions and messages flow both ways, so services on
// either side answer calls made on the other.
type LeafRemote struct {
	// URLs of the remote's leaf-node listener, "nats-leaf://host:port"
	// ("nats://", "tls://", "ws://" and "wss://" also work), tried in
	// turn. At least one is required. A URL may carry "user:password@".
	URLs []string

	// Credentials is the path of a NATS credentials file (a user JWT and
	// its nkey seed) to authenticate with. Empty means none. The file must
	// be readable when [Start] is called.
	Credentials string

	// TLS configures TLS on the connection. Nil means TLS only when a URL
	// says so ("tls://", "wss://").
	TLS *tls.Config
}

func (r LeafRemote) options() (*server.RemoteLeafOpts, error) {
	if len(r.URLs) == 0 {
		return nil, errors.New("no URLs")
	}
	lo := &server.RemoteLeafOpts{Credentials: r.Credentials}
	for _, s := range r.URLs {
		u, err := parseURL(s, "nats-leaf", "nats", "tls", "ws", "wss")
		if err != nil {
			return nil, err
		}
		lo.URLs = append(lo.URLs, u)
	}
	if r.Credentials != "" {
		if err := readable(r.Credentials); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
	}
	if r.TLS != nil {
		lo.TLS, lo.TLSConfig = true, r.TLS
	}
	return lo, nil
}

// parseURL parses a server URL and checks that it has one of the schemes and
// a host with a port.
func parseURL(s string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only
		// the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("malformed URL: %w", err)
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok {
		return nil, fmt.Errorf("URL %q: scheme %q is not one of %q", redact(u), u.Scheme, schemes)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("URL %q: want scheme://host:port", redact(u))
	}
	return u, nil
}

// redact hides a URL's password so that errors and logs never show it.
func redact(u *url.URL) string {
	return u.Redacted()
}

// readable reports why a file cannot be read, if it cannot.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.Read(b[:]); err == io.EOF {
		return fmt.Errorf("%s: the file is empty", path)
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
