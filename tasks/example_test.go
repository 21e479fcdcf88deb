package tasks_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/events"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// Example mounts async calls and events in front of the gateway, as the
// README shows, and makes an async call over HTTP. (The README's chain
// has authentication and the policy; this one only request IDs.)
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "funcmesh-example-")
	defer os.RemoveAll(dir)
	secret := []byte("the-host-claims-key-at-least-32-bytes")
	authn := alice.New(middleware.RequestID)
	chain := authn
	mux := http.NewServeMux()

	b, _ := broker.Start(ctx, broker.WithJetStream(dir))
	signer, _ := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k1", Secret: secret})
	q, _ := tasks.New(ctx, b.Conn(), tasks.Options{Signer: signer})
	ev, _ := events.New(ctx, q, events.Options{Signer: signer, Triggers: []events.Trigger{
		{Name: "welcome-email", Types: []string{"signup"}, Service: "mail", Function: "welcome"},
	}})
	client, _ := mesh.NewClient(b.Conn())
	d := q.NewDispatcher(client) // runs the tasks; every host runs one
	_ = d.Start(ctx)
	_ = ev.Start(ctx)
	gw, _ := mesh.NewGateway(b.Conn())
	async := &tasks.Handler{Tasks: q, Next: gw, StatusPath: "/tasks/"}
	mux.Handle("POST /fn/{service}/{function}", chain.Then(&events.Handler{Events: ev, Next: async}))
	mux.Handle("GET /tasks/{id}", authn.Then(q.StatusHandler()))

	defer b.Close()
	defer d.Stop(ctx)
	defer ev.Stop()
	nc, _ := b.NewConn("mail")
	mail, _ := mesh.NewService(nc, "mail")
	_ = mail.HandleFunc("welcome", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		return []byte(`"sent"`), nil
	})
	defer mail.Stop(ctx)

	srv := httptest.NewServer(mux)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/fn/mail/welcome", strings.NewReader(`{"email":"ada@example.com"}`))
	req.Header.Set("Prefer", "respond-async")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	fmt.Println(res.Status, res.Header.Get("Preference-Applied"))
	id := strings.TrimPrefix(res.Header.Get("Location"), "/tasks/")
	for range 200 {
		if st, err := q.Status(ctx, id); err == nil && st.State.Final() {
			fmt.Println(st.State, string(st.Result))
			break
		}
		time.Sleep(25 * time.Millisecond) // poll interval while the task runs
	}
	// Output:
	// 202 Accepted respond-async
	// succeeded "sent"
}
