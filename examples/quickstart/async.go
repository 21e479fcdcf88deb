package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/events"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

//go:embed schedules.json
var schedulesJSON []byte

// durable is the quickstart's durable work, on the embedded broker's
// JetStream: async calls (package tasks) and one event trigger, a welcome
// email when a user signs up (package events), with the mail service that
// sends it.
type durable struct {
	q    *tasks.Tasks
	d    *tasks.Dispatcher
	ev   *events.Events
	mail *mesh.Service
}

// startDurable starts the dispatcher, the trigger and the mail service.
// signer signs the claims a task or an event carries: the host's claims
// key, the same that signs forwarded claims.
func startDurable(ctx context.Context, b *broker.Broker, signer *transport.ClaimsSigner, logger *slog.Logger) (*durable, error) {
	q, err := tasks.New(ctx, b.Conn(), tasks.Options{Signer: signer, Logger: logger})
	if err != nil {
		return nil, err
	}
	ev, err := events.New(ctx, q, events.Options{Signer: signer, Logger: logger,
		Triggers: []events.Trigger{{
			Name:    "welcome-email",
			Types:   []string{"signup"},
			Service: "mail", Function: "welcome",
			Retry: tasks.Retry{MaxAttempts: 3, Timeout: 10 * time.Second},
		}}})
	if err != nil {
		return nil, err
	}
	nc, err := b.NewConn("mail")
	if err != nil {
		return nil, err
	}
	mail, err := mesh.NewService(nc, "mail", mesh.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	// mail.welcome runs once per task ID: a real one would record the ID
	// with the email it sent, to send it once even when an attempt is
	// repeated.
	err = mail.HandleFunc("welcome", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		var in struct {
			Email string `json:"email"`
		}
		if err := c.Decode(&in); err != nil || in.Email == "" {
			return nil, transport.NewError(transport.CodeInvalidArgument, `want {"email": "..."}`)
		}
		logger.Info("sending a welcome email", "to", in.Email,
			"task", c.Header(transport.HeaderTaskID), "attempt", c.Header(transport.HeaderTaskAttempt))
		return json.Marshal(map[string]string{"sent_to": in.Email})
	})
	if err != nil {
		return nil, err
	}
	// The dispatcher's client signs the claims it sends, so that a task's
	// function can pass them on to the functions it calls.
	client, err := mesh.NewClient(b.Conn(), mesh.WithClaimsSigner(signer))
	if err != nil {
		return nil, err
	}
	d := q.NewDispatcher(client)
	if err := d.Start(ctx); err != nil {
		return nil, err
	}
	if err := ev.Start(ctx); err != nil {
		return nil, err
	}
	// The periodic jobs of schedules.json: JetStream fires each tick
	// once, whichever host runs; a schedule the file no longer lists is
	// deleted.
	sc, err := schedules.New(ctx, q)
	if err != nil {
		return nil, err
	}
	list, err := schedules.ParseFile(schedulesJSON)
	if err != nil {
		return nil, err
	}
	if err := sc.Sync(ctx, list); err != nil {
		return nil, err
	}
	return &durable{q: q, d: d, ev: ev, mail: mail}, nil
}

// wrap puts the async and event routes in front of the gateway: a POST
// with "Prefer: respond-async" is enqueued (202), a POST to
// /fn/events/<type> emits an event (202), anything else is a call.
func (du *durable) wrap(gw http.Handler) http.Handler {
	async := &tasks.Handler{Tasks: du.q, Next: gw, StatusPath: "/tasks/"}
	return &events.Handler{Events: du.ev, Next: async}
}

// stop stops taking events and tasks, letting the running ones finish.
func (du *durable) stop(logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	du.ev.Stop()
	if err := du.d.Stop(ctx); err != nil {
		logger.Error("stopping the dispatcher", "err", err)
	}
	if err := du.mail.Stop(ctx); err != nil {
		logger.Error("stopping service", "service", "mail", "err", err)
	}
}
