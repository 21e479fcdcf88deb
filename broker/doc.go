// Package broker gives a funcmesh host its NATS: an embedded nats-server
// running inside the host process, or a connection to an existing NATS
// deployment, behind one type, [*Broker].
//
// # Embedded
//
// [Start] with no options runs a nats-server in the process with nothing to
// configure and no port opened: the host's connection ([Broker.Conn]) and
// the connections of services running in the same process
// ([Broker.NewConn]) reach it in memory.
//
//	b, err := broker.Start(ctx)
//	if err != nil { … }
//	defer b.Close()
//	gw := mesh.NewGateway(b.Conn())
//
// Options add what a deployment grows into:
//
//   - [WithListen]: accept TCP clients, so services in other processes
//     (in any language) connect at [Broker.ClientURL]; [WithListenTLS]
//     puts TLS on that listener;
//   - [WithCluster]: several host processes form one NATS cluster, and a
//     call made on any node reaches a service on any node;
//   - [WithLeafNodes]: join a central NATS deployment as a leaf node;
//   - [WithJetStream], [WithMaxPayload], [WithServerName];
//   - [WithServiceAuth]: per-service credentials (below);
//   - [WithLogger]: the server's log and the connections' events to a
//     *slog.Logger (silent without one).
//
// Bad configuration (a port in use, a malformed route URL, an unreadable
// credentials file, a negative size) makes [Start] return an error; it
// never panics or exits the process.
//
// # Connect mode
//
// [Connect] connects to NATS servers that run elsewhere, with a credentials
// file, user and password, or a token, and TLS. The returned Broker is used
// exactly like an embedded one. Its connections reconnect forever, with
// exponential backoff and jitter, and report every state change
// ([Event]: disconnected, reconnected, closed, lame duck, errors) to a hook
// ([WithEventHook]) and the logger.
//
// While a connection is down, nothing is buffered by default
// ([WithReconnectBuffer]): a request made during an outage fails at once
// (nats.ErrReconnectBufExceeded) so that the gateway answers 503 now,
// rather than the request being sent, and the function run, seconds later
// when nobody waits for the answer any more.
//
// # Connections and shutdown
//
// [Broker.Conn] is the host's connection. [Broker.NewConn] opens more, for
// instance one per service in the process. The Broker owns them all:
// [Broker.Shutdown] drains every connection (in-flight messages are
// handled, then subscriptions end), then stops the embedded server, all
// bounded by its context; [Broker.Close] does the same within
// [DefaultCloseTimeout]. Stop the HTTP server first. [Broker.Ready] waits
// until the host's connection is up.
//
// # Per-service credentials
//
// With [WithServiceAuth] the embedded server requires a user and password of
// every client. The host's identity ([Broker.HostCredentials], used by the
// Broker's own connections) may do anything. A service's identity
// ([Broker.ServiceCredentials]) may only take calls to its own functions
// (fn.<service>.> in queue group "q"), answer NATS micro discovery
// ($SRV.PING, $SRV.INFO, $SRV.STATS), reply to requests it received and
// make nested calls on its own call route (call.<service>.>), which the
// host's router (mesh.Router) checks against the policy.
// A process holding service A's credentials therefore cannot register as
// service B, read B's calls, or forge B's replies: the server refuses the
// subscription ("permissions violation") and drops the publish. Passwords
// are derived from a secret, so credentials can be made for services that
// start later, survive restarts, and work on every node of a cluster that
// shares the secret. See [ServiceAuth] for the exact permissions.
//
//	b, _ := broker.Start(ctx, broker.WithListen(":4222"),
//		broker.WithServiceAuth(broker.ServiceAuth{Secret: secret}))
//	creds, _ := b.ServiceCredentials("payments")
//	// in the payments process:
//	nc, _ := nats.Connect(url, creds.Option())
package broker
