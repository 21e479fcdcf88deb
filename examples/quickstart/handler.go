package main

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"

	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/examples/web/webpage"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/spacecloud"
	"github.com/funcmesh/funcmesh/transport"
)

// demoSecret signs and verifies the demo tokens (HS256). A real app reads
// its secret from its configuration, or verifies its identity provider's
// tokens with middleware.JWTOptions.JWKSURL.
var demoSecret = []byte("funcmesh-quickstart-demo-secret-do-not-use")

// The policy: the Space-Cloud-style rule config and a Rego module. Given
// both, a call must be allowed by both.
var (
	//go:embed rules.json
	rulesJSON []byte
	//go:embed policy.rego
	policyRego string
)

// newHandler builds the app's routes:
//
//	/fn/{service}/{function}  the gateway, behind the middleware chain
//	GET /fn                   the running services, their functions and instances
//	GET /tasks/{id}           an async call's status, for its caller
//	GET /                     the web example's page, calling the gateway from its origin
//	/v1/api/quickstart/...    Space Cloud's call API, on the same chain
//
// Pages from corsOrigins may call the gateway from their own origins. It
// also returns the router of nested calls, which the caller stops: a
// function that calls another (greeter.welcome calls accounts.me) passes
// the same policy.
func newHandler(ctx context.Context, b *broker.Broker, du *durable, signer *transport.ClaimsSigner, logger *slog.Logger, corsOrigins []string) (http.Handler, *mesh.Router, error) {
	nc := b.Conn()
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: demoSecret}},
	})
	if err != nil {
		return nil, nil, err
	}
	// Policies may call functions (a func rule, funcmesh.call in Rego):
	// through this client, with the caller's claims signed like any call.
	policyClient, err := mesh.NewClient(nc, mesh.WithClaimsSigner(signer))
	if err != nil {
		return nil, nil, err
	}
	policy, err := authz.New(ctx,
		authz.RulesJSON(rulesJSON),
		authz.Module("policy.rego", policyRego),
		authz.WithCall(policyClient.Invoke),
		authz.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}
	cors, err := middleware.CORS(middleware.CORSOptions{
		AllowedOrigins: corsOrigins, // your web app; go run ./examples/web serves one
	})
	if err != nil {
		return nil, nil, err
	}
	// The host signs the claims it forwards (signer, main.go), so that a
	// function can pass them on to the functions it calls; the router
	// checks the signature.
	gw, err := mesh.NewGateway(nc, mesh.WithClaimsSigner(signer), mesh.WithLogger(logger))
	if err != nil {
		return nil, nil, err
	}
	router, err := mesh.NewRouter(nc, policy.AuthorizeCall, mesh.WithClaimsSigner(signer))
	if err != nil {
		return nil, nil, err
	}
	disc, err := mesh.NewDiscovery(nc)
	if err != nil {
		return nil, nil, err
	}

	// alice.New(a, b).Then(h) is a(b(h)): the request meets them in order.
	chain := alice.New(
		middleware.RequestID,         // first, so everything after has the ID
		middleware.AccessLog(logger), // one line per request
		middleware.Recover(logger),   // a panic is a 500, not a dead process
		cors,                         // answers browsers' preflights
		middleware.BodyLimit(64<<10), // params up to 64 KiB
		middleware.JWT(verifier),     // verified claims; no token: anonymous; bad token: 401
		policy.Middleware,            // rules.json and policy.rego: 401/403 or on
	)
	mux := http.NewServeMux()
	// No method in the pattern, so CORS preflights (OPTIONS) reach the
	// chain; the gateway answers 405 to anything but POST.
	mux.Handle("/fn/{service}/{function}", chain.Then(du.wrap(gw)))
	mux.Handle("GET /tasks/{id}", alice.New(middleware.RequestID, middleware.JWT(verifier)).Then(du.q.StatusHandler()))
	mux.Handle("GET /fn", alice.New(middleware.RequestID, middleware.AccessLog(logger)).Then(disc))
	mux.Handle("/", webpage.Handler("")) // a frontend on the gateway's origin; GET only

	// Space Cloud's call API (space-api's api.call) on the same chain:
	// the envelope is unwrapped before the policy sees the params.
	sc := &spacecloud.Handler{Next: chain.Then(gw), Project: "quickstart"}
	mux.Handle(spacecloud.Pattern, sc)
	mux.Handle(spacecloud.LegacyPattern, sc)
	return mux, router, nil
}
