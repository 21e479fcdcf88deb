package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// startBroker runs an in-process NATS server for the examples; a real
// application gets its connection from funcmesh's broker package or
// nats.Connect.
func startBroker() (url string, stop func()) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		panic("broker not ready")
	}
	return s.ClientURL(), s.Shutdown
}

type ChargeReq struct {
	Amount int `json:"amount"`
}

type Receipt struct {
	Charged int    `json:"charged"`
	By      string `json:"by"`
}

// A service with a typed function and a plain one, called from Go.
func Example() {
	url, stop := startBroker()
	defer stop()
	nc, _ := nats.Connect(url)
	defer nc.Close()

	svc, err := mesh.NewService(nc, "payments", mesh.WithVersion("1.2.0"))
	if err != nil {
		panic(err)
	}
	defer svc.Stop(context.Background())

	// A typed function: JSON in, JSON out.
	_ = svc.Handle("charge", mesh.Func(func(ctx context.Context, in ChargeReq) (Receipt, error) {
		if in.Amount <= 0 {
			return Receipt{}, transport.NewError(transport.CodeInvalidArgument, "amount must be positive")
		}
		by := "anonymous"
		if c, ok := mesh.CallFromContext(ctx); ok {
			if claims, ok := c.Claims(); ok {
				by = fmt.Sprint(claims["sub"])
			}
		}
		return Receipt{Charged: in.Amount, By: by}, nil
	}))
	// A plain function: raw params, raw result.
	_ = svc.HandleFunc("ping", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		c.SetReplyContentType("text/plain")
		return []byte("pong"), nil
	})

	client, _ := mesh.NewClient(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	r, err := mesh.InvokeJSON[Receipt](ctx, client, "payments", "charge", ChargeReq{Amount: 5})
	fmt.Println(r.Charged, r.By, err)

	_, err = mesh.InvokeJSON[Receipt](ctx, client, "payments", "charge", ChargeReq{Amount: -1})
	var e *transport.Error
	if errors.As(err, &e) {
		fmt.Println(e.HTTPStatus(), e.Message())
	}

	pong, err := client.Invoke(ctx, "payments", "ping", nil)
	fmt.Println(string(pong), err)

	_, err = client.Invoke(ctx, "shipping", "track", nil)
	fmt.Println(transport.CodeOf(err))
	// Output:
	// 5 anonymous <nil>
	// 400 amount must be positive
	// pong <nil>
	// unavailable
}

// The gateway mounted on a ServeMux, with the discovery handler beside it.
func ExampleGateway() {
	url, stop := startBroker()
	defer stop()
	nc, _ := nats.Connect(url)
	defer nc.Close()

	svc, _ := mesh.NewService(nc, "greeter")
	defer svc.Stop(context.Background())
	_ = svc.Handle("hello", mesh.Func(func(ctx context.Context, in struct{ Name string }) (string, error) {
		return "hello, " + in.Name, nil
	}))

	gw, err := mesh.NewGateway(nc)
	if err != nil {
		panic(err)
	}
	disc, _ := mesh.NewDiscovery(nc)
	mux := http.NewServeMux()
	mux.Handle("POST /fn/{service}/{function}", gw) // behind your auth middleware
	mux.Handle("GET /fn", disc)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, path := range []string{"/fn/greeter/hello", "/fn/greeter/bye", "/fn/nobody/hello", "/fn/bad.name/x"} {
		res, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{"name":"Ada"}`))
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			fmt.Println(res.StatusCode, string(body))
			continue
		}
		e, _, _ := transport.ParseHTTPError(res.StatusCode, body)
		fmt.Println(res.StatusCode, e.Code(), e.Message())
	}
	// Output:
	// 200 "hello, Ada"
	// 404 not_found service greeter has no function bye
	// 503 unavailable service nobody is not running
	// 400 invalid_argument invalid service name: byte 0x2e at 3 is not one of A-Z a-z 0-9 _ -
}

// Listing the running services.
func ExampleDiscovery() {
	url, stop := startBroker()
	defer stop()
	nc, _ := nats.Connect(url)
	defer nc.Close()

	for _, name := range []string{"orders", "payments"} {
		svc, _ := mesh.NewService(nc, name, mesh.WithVersion("2.0.0"))
		defer svc.Stop(context.Background())
		_ = svc.Handle("list", mesh.HandlerFunc(func(context.Context, *mesh.Call) ([]byte, error) { return []byte(`[]`), nil }))
	}
	// The listing collects the replies that arrive within the window.
	disc, _ := mesh.NewDiscovery(nc, mesh.WithDiscoveryWindow(time.Second))
	services, err := disc.Services(context.Background())
	if err != nil {
		panic(err)
	}
	for _, s := range services {
		fmt.Println(s.Name, s.Functions, len(s.Instances), s.Instances[0].Version)
	}
	// Output:
	// orders [list] 1 2.0.0
	// payments [list] 1 2.0.0
}

// A function calling another: passing its context passes the caller's
// claims, request ID, deadline and trace on. The call goes through the
// host's router, which asks the policy first: here, a function that lets
// orders call users and nothing else (a host passes its
// authz.Authorizer's AuthorizeCall).
func ExampleCall_Client() {
	url, stop := startBroker()
	defer stop()
	nc, _ := nats.Connect(url)
	defer nc.Close()

	signer, _ := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k1", Secret: []byte("a secret of at least 32 bytes...")})
	router, _ := mesh.NewRouter(nc, func(ctx context.Context, service, function string, params []byte) error {
		if caller, _ := reqctx.Caller(ctx); caller.Service == "orders" && service == "users" {
			return nil
		}
		return transport.NewError(transport.CodePermissionDenied, "not for you")
	}, mesh.WithClaimsSigner(signer))
	defer router.Stop(context.Background())

	users, _ := mesh.NewService(nc, "users")
	defer users.Stop(context.Background())
	_ = users.HandleFunc("me", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		caller, _ := c.Caller()
		return []byte(`"` + c.RequestID() + ` via ` + caller.String() + `"`), nil
	})
	orders, _ := mesh.NewService(nc, "orders")
	defer orders.Stop(context.Background())
	_ = orders.HandleFunc("mine", func(ctx context.Context, c *mesh.Call) ([]byte, error) {
		return c.Client().Invoke(ctx, "users", "me", nil)
	})

	client, _ := mesh.NewClient(nc)
	ctx := context.Background()
	ctx = reqctx.WithRequestID(ctx, "req-7") // what the request ID middleware does
	out, err := client.Invoke(ctx, "orders", "mine", nil)
	fmt.Println(string(out), err)
	// Output:
	// "req-7 via orders.mine" <nil>
}
