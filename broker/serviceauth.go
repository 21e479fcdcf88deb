package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/transport"
)

// HostUser is the user name of the host's credentials
// ([Broker.HostCredentials]). It contains a '.', so no service can have it.
const HostUser = "funcmesh.host"

// MinSecretLen is the shortest [ServiceAuth.Secret] accepted.
const MinSecretLen = 16

// DefaultReplyWindow is how long a service may take to answer a request it
// received when [ServiceAuth.ReplyWindow] is zero.
const DefaultReplyWindow = 10 * time.Minute

// ErrNoServiceAuth is returned by [Broker.ServiceCredentials] and
// [Broker.HostCredentials] when the Broker runs without [WithServiceAuth].
var ErrNoServiceAuth = errors.New("broker: service authorization is not enabled (see WithServiceAuth)")

// ServiceAuth configures per-service authorization in the embedded server
// ([WithServiceAuth]). With it on, every client authenticates with a user
// name and a password, and there are two kinds of identity:
//
// The host ([HostUser]) may do anything: it is the process that holds the
// secret and could mint any credential anyway. [Broker.Conn] and
// [Broker.NewConn] use it unless told otherwise; the gateway and the
// nested-call router (mesh.Router) work with it.
//
// A service, whose user name is the service's name, may only
//
//   - subscribe to its own functions, <prefix>.<service>.>, and only in the
//     queue group "q" ([transport.QueueGroup]), so it can neither register as
//     another service nor read another service's calls, nor listen to its
//     own calls outside the queue group and see calls meant for its other
//     instances;
//   - subscribe to the $SRV discovery subjects that NATS micro uses:
//     $SRV.PING, $SRV.INFO and $SRV.STATS, and those verbs followed by its
//     own name (with or without an instance ID);
//   - subscribe to its own reply inbox, _INBOX_<service>.>
//     ([Credentials.InboxPrefix]), which no other service may;
//   - publish its own nested calls on the call route,
//     <callprefix>.<service>.<service called>.<function> (see
//     [transport.CallSubject]): only the host's routers subscribe there,
//     so the subject proves which service made the call, and the router
//     asks the policy before it forwards the call;
//   - publish replies, and only to the reply subject of a request it
//     received, once, within ReplyWindow (nats-server's allow_responses).
//
// It cannot publish to any other subject: not to a function (a call made
// without the route would skip the policy), not to another service's inbox,
// not to JetStream's $JS.API or the system's $SYS subjects. The reply
// permission is granted by the server for every message delivered to a
// client that carries a reply subject, whoever chose it, so the design
// makes sure that every message a service can receive has a reply subject
// chosen by the host: function calls come from the gateway or a router
// (host connections), $SRV requests only from host connections (no service
// may publish there), and the answers in its inbox come from a router,
// which relays them without a reply subject. No service can therefore
// deliver to itself, or have another service deliver to it, a message whose
// reply subject it chose, and "reply once" is no way around the publish
// permissions.
//
// A service's password is an HMAC of its name under Secret, so credentials
// can be made for services that start later without touching the running
// server, every node of a cluster that shares the Secret accepts them, and
// they stay valid across restarts. Changing the Secret revokes them all.
//
// Limits: a service may answer the generic $SRV.INFO request with made-up
// data (mesh.Discovery lists only what a service says about itself on its
// own $SRV.INFO.<name> subject, which no other service may take). The
// permissions apply to clients of this server: messages arriving over
// cluster routes ([Cluster]) or leaf-node connections ([LeafRemote]) were
// checked, if at all, where their publisher connected, so give every node
// the same ServiceAuth and keep route ports private.
type ServiceAuth struct {
	// Secret is the key service passwords are derived from, at least
	// [MinSecretLen] bytes; keep it like a password. Nil means a random
	// secret for this Broker: credentials are then valid only until it
	// stops, and no other node accepts them. [Broker.ClaimsKey] derives
	// the key that signs forwarded claims from it too.
	Secret []byte

	// Prefix is the first token(s) of function subjects. Empty means
	// [transport.DefaultPrefix].
	Prefix string

	// CallPrefix is the first token(s) of call-route subjects. Empty means
	// [transport.DefaultCallPrefix]. It must not overlap Prefix (see
	// [transport.ValidateCallPrefix]).
	CallPrefix string

	// ReplyWindow is how long after receiving a request a service may
	// still answer it. Zero means [DefaultReplyWindow]; negative is an
	// error.
	ReplyWindow time.Duration
}

// Credentials are a user name and password for a broker with
// [WithServiceAuth], plus the inbox prefix the client must use for
// requests. A client in another language passes them as its connection's
// user, password and inbox prefix (nats.js: user, pass, inboxPrefix).
type Credentials struct {
	User     string
	Password string
	// InboxPrefix is the subject prefix the client's reply inboxes must
	// start with: _INBOX_<service> for a service, empty (the usual
	// "_INBOX") for the host.
	InboxPrefix string
}

// Option returns the nats.go option that connects with these credentials:
// user, password and inbox prefix.
func (c Credentials) Option() nats.Option {
	return func(o *nats.Options) error {
		o.User, o.Password = c.User, c.Password
		if c.InboxPrefix != "" {
			return nats.CustomInboxPrefix(c.InboxPrefix)(o)
		}
		return nil
	}
}

// String returns the credentials without the password, so that they can be
// logged.
func (c Credentials) String() string {
	return fmt.Sprintf("broker.Credentials{User: %q, Password: \"[redacted]\", InboxPrefix: %q}", c.User, c.InboxPrefix)
}

// serviceAuth is the embedded server's authenticator
// (server.Options.CustomClientAuthentication).
type serviceAuth struct {
	secret     []byte
	prefix     string
	callPrefix string
	window     time.Duration
	hostPass   string
}

func newServiceAuth(a ServiceAuth) (*serviceAuth, error) {
	s := &serviceAuth{prefix: a.Prefix, callPrefix: a.CallPrefix, window: a.ReplyWindow}
	switch {
	case a.Secret == nil:
		s.secret = make([]byte, 32)
		if _, err := rand.Read(s.secret); err != nil {
			return nil, fmt.Errorf("broker: WithServiceAuth: random secret: %w", err)
		}
	case len(a.Secret) < MinSecretLen:
		return nil, fmt.Errorf("broker: WithServiceAuth: secret of %d bytes, want at least %d", len(a.Secret), MinSecretLen)
	default:
		s.secret = append([]byte(nil), a.Secret...)
	}
	if s.prefix == "" {
		s.prefix = transport.DefaultPrefix
	}
	if err := transport.ValidatePrefix(s.prefix); err != nil {
		return nil, fmt.Errorf("broker: WithServiceAuth: %w", err)
	}
	if s.callPrefix == "" {
		s.callPrefix = transport.DefaultCallPrefix
	}
	if err := transport.ValidateCallPrefix(s.callPrefix, s.prefix); err != nil {
		return nil, fmt.Errorf("broker: WithServiceAuth: %w", err)
	}
	switch {
	case s.window < 0:
		return nil, fmt.Errorf("broker: WithServiceAuth: negative ReplyWindow %v", s.window)
	case s.window == 0:
		s.window = DefaultReplyWindow
	}
	s.hostPass = s.derive("host", "")
	return s, nil
}

// derive is the password of an identity: HMAC-SHA256 under the secret of
// its kind and name, base64url without padding (43 characters, safe in any
// client's configuration).
func (s *serviceAuth) derive(kind, name string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("funcmesh/v1/" + kind + "\x00" + name))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *serviceAuth) hostCredentials() Credentials {
	return Credentials{User: HostUser, Password: s.hostPass}
}

func (s *serviceAuth) serviceCredentials(service string) Credentials {
	return Credentials{User: service, Password: s.derive("service", service), InboxPrefix: inboxPrefix(service)}
}

func inboxPrefix(service string) string { return transport.InboxPrefix(service) }

// Check authenticates a client connection and gives it its permissions. It
// is called by nats-server for every client that connects.
func (s *serviceAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil {
		return false
	}
	perms, ok := s.authenticate(o.Username, o.Password)
	if !ok {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Username, Permissions: perms})
	return true
}

// authenticate checks a user and password and returns the user's
// permissions: nil (everything) for the host.
func (s *serviceAuth) authenticate(user, password string) (*server.Permissions, bool) {
	switch {
	case user == HostUser:
		return nil, equal(password, s.hostPass)
	case transport.ValidateName(user) == nil:
		if !equal(password, s.derive("service", user)) {
			return nil, false
		}
		return s.permissions(user), true
	default:
		return nil, false
	}
}

func equal(got, want string) bool {
	return hmac.Equal([]byte(got), []byte(want))
}

// permissions are a service's permissions, described on ServiceAuth.
func (s *serviceAuth) permissions(service string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{s.callPrefix + "." + service + ".>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			s.prefix + "." + service + ".> " + transport.QueueGroup,
			"$SRV.PING", "$SRV.INFO", "$SRV.STATS",
			"$SRV.*." + service, "$SRV.*." + service + ".*",
			inboxPrefix(service) + ".>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: s.window},
	}
}

// claimsKey derives the key that signs forwarded claims: every host that
// shares the secret derives the same one, and its ID changes with the
// secret, so a host given the old key as a previous one (rotation) tells
// them apart.
func (s *serviceAuth) claimsKey() transport.ClaimsKey {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("funcmesh/v1/claims-key"))
	secret := m.Sum(nil)
	m.Reset()
	m.Write([]byte("funcmesh/v1/claims-key-id"))
	return transport.ClaimsKey{ID: "sa-" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:6]), Secret: secret}
}
