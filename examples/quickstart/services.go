package main

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/transport"
)

// The two services of the quickstart. Each is a mesh.Service on its own
// connection, as it would be in its own process; moving one out of this
// process changes only where its connection comes from.

// startGreeter runs the greeter service:
//
//	hello    a typed function: {"name": "Ada"} → {"greeting": "Hello, Ada!"}
//	welcome  calls accounts.me on the caller's behalf and greets them
func startGreeter(nc *nats.Conn, logger *slog.Logger) (*mesh.Service, error) {
	svc, err := mesh.NewService(nc, "greeter",
		mesh.WithVersion("1.0.0"),
		mesh.WithDescription("says hello"),
		mesh.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	if err := svc.Handle("hello", mesh.Func(hello)); err != nil {
		return nil, err
	}
	if err := svc.HandleFunc("welcome", welcome); err != nil {
		return nil, err
	}
	return svc, nil
}

type helloIn struct {
	Name string `json:"name"`
}

type helloOut struct {
	Greeting string `json:"greeting"`
}

// hello is a typed function: mesh.Func decodes the params into helloIn
// (malformed JSON is a 400 that says why) and encodes the result.
func hello(_ context.Context, in helloIn) (helloOut, error) {
	if len(in.Name) > 100 {
		return helloOut{}, transport.NewError(transport.CodeInvalidArgument, "name: at most 100 bytes")
	}
	if in.Name == "" {
		in.Name = "world"
	}
	return helloOut{Greeting: "Hello, " + in.Name + "!"}, nil
}

// welcome calls another function. It calls with its own ctx through the
// call's client, so the caller's claims, the request ID and the deadline
// travel on, and accounts.me sees greeter.welcome as its caller.
func welcome(ctx context.Context, c *mesh.Call) ([]byte, error) {
	me, err := mesh.InvokeJSON[profile](ctx, c.Client(), "accounts", "me", nil)
	if err != nil {
		return nil, err // a *transport.Error keeps its status (401, 503, ...)
	}
	return json.Marshal(map[string]any{
		"message":    "Welcome back, " + me.Name + "!",
		"you":        me,
		"request_id": c.RequestID(),
	})
}

// startAccounts runs the accounts service, whose functions need a signed-in
// caller (the rules say "authenticated"; the functions check too):
//
//	me       who the caller is, from the verified claims
//	profile  {"user": "ada"} → a profile; the Rego policy lets a user read
//	         only their own unless they are an admin
func startAccounts(nc *nats.Conn, logger *slog.Logger) (*mesh.Service, error) {
	svc, err := mesh.NewService(nc, "accounts",
		mesh.WithVersion("1.0.0"),
		mesh.WithDescription("who is calling"),
		mesh.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	if err := svc.HandleFunc("me", me); err != nil {
		return nil, err
	}
	if err := svc.Handle("profile", mesh.Func(readProfile)); err != nil {
		return nil, err
	}
	return svc, nil
}

type profile struct {
	User      string `json:"user"`
	Name      string `json:"name"`
	Role      string `json:"role,omitempty"`
	Caller    string `json:"caller,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// profiles stands in for a database.
var profiles = map[string]profile{
	"ada":   {User: "ada", Name: "Ada Lovelace"},
	"grace": {User: "grace", Name: "Grace Hopper"},
}

// me reads the verified claims the gateway passed with the call. The policy
// already turned anonymous callers away; checking again costs nothing and
// keeps the function safe if the rules change.
func me(_ context.Context, c *mesh.Call) ([]byte, error) {
	claims, ok := c.Claims()
	if !ok {
		return nil, transport.NewError(transport.CodeUnauthenticated, "sign in first")
	}
	sub, _ := claims["sub"].(string)
	p := profiles[sub]
	p.User = sub
	if p.Name == "" {
		p.Name = sub
	}
	p.Role, _ = claims["role"].(string)
	p.RequestID = c.RequestID()
	if caller, ok := c.Caller(); ok {
		p.Caller = caller.String() // "greeter.welcome" when welcome calls
	}
	return json.Marshal(p)
}

type profileIn struct {
	User string `json:"user"`
}

func readProfile(_ context.Context, in profileIn) (profile, error) {
	p, ok := profiles[in.User]
	if !ok {
		return profile{}, transport.NewError(transport.CodeNotFound, "no such user")
	}
	return p, nil
}
