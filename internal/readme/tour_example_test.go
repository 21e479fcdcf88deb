package readme_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/justinas/alice"

	"github.com/funcmesh/funcmesh/authz"
	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/middleware"
	"github.com/funcmesh/funcmesh/transport"
)

type ChargeReq struct {
	Amount int `json:"amount"`
}

type Receipt struct {
	Charged int    `json:"charged"`
	By      string `json:"by"`
}

var secret = []byte("a-demo-secret-of-at-least-32-bytes!!")

const rules = `{"services": {
  "payments": {"functions": {"charge": {"rule": {"rule": "authenticated"}}}},
  "default":  {"functions": {"default": {"rule": {"rule": "deny"}}}}}}`

// The host app: an embedded broker, the gateway behind JWT and the policy,
// and a service in the same process.
func Example_hostApp() {
	ctx := context.Background()

	// 1. Embed the broker: in-process, no port opened.
	b, err := broker.Start(ctx)
	if err != nil {
		panic(err)
	}
	defer b.Close()

	// 2. A service: plain Go functions, on its own connection.
	nc, err := b.NewConn("payments")
	if err != nil {
		panic(err)
	}
	svc, err := mesh.NewService(nc, "payments", mesh.WithVersion("1.2.0"))
	if err != nil {
		panic(err)
	}
	defer svc.Stop(ctx)
	err = svc.Handle("charge", mesh.Func(func(ctx context.Context, in ChargeReq) (Receipt, error) {
		if in.Amount <= 0 {
			return Receipt{}, transport.NewError(transport.CodeInvalidArgument, "amount must be positive")
		}
		call, _ := mesh.CallFromContext(ctx)
		claims, _ := call.Claims()
		return Receipt{Charged: in.Amount, By: fmt.Sprint(claims["sub"])}, nil
	}))
	if err != nil {
		panic(err)
	}

	// 3. Authentication, the policy and the gateway, chained with alice.
	verifier, err := middleware.NewJWTVerifier(middleware.JWTOptions{
		Keys: []middleware.JWTKey{{Algorithm: "HS256", Key: secret}},
	})
	if err != nil {
		panic(err)
	}
	policy, err := authz.New(ctx,
		authz.RulesJSON([]byte(rules))) // or authz.Files("policy/") for Rego
	if err != nil {
		panic(err)
	}
	defer policy.Close()
	// The gateway signs the claims it forwards; the router makes the calls
	// functions make to functions pass the same policy.
	signer, err := transport.NewClaimsSigner(b.ClaimsKey())
	if err != nil {
		panic(err)
	}
	gw, err := mesh.NewGateway(b.Conn(), mesh.WithClaimsSigner(signer))
	if err != nil {
		panic(err)
	}
	router, err := mesh.NewRouter(b.Conn(), policy.AuthorizeCall, mesh.WithClaimsSigner(signer))
	if err != nil {
		panic(err)
	}
	defer router.Stop(ctx)
	chain := alice.New(middleware.RequestID, middleware.Recover(nil),
		middleware.BodyLimit(1<<20), middleware.JWT(verifier), policy.Middleware)

	mux := http.NewServeMux() // your app's mux, with its own routes
	mux.Handle("POST /fn/{service}/{function}", chain.Then(gw))

	srv := httptest.NewServer(mux)
	defer srv.Close()
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "ada", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	for _, tc := range []struct{ auth, path, body string }{
		{"Bearer " + token, "/fn/payments/charge", `{"amount": 5}`},
		{"Bearer " + token, "/fn/payments/charge", `{"amount": -1}`},
		{"", "/fn/payments/charge", `{"amount": 5}`},
		{"Bearer " + token, "/fn/payments/refund", `{}`},
	} {
		req, _ := http.NewRequest("POST", srv.URL+tc.path, strings.NewReader(tc.body))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			e, _, _ := transport.ParseHTTPError(res.StatusCode, body)
			fmt.Println(res.StatusCode, e.Code())
			continue
		}
		fmt.Println(res.StatusCode, string(body))
	}
	// Output:
	// 200 {"charged":5,"by":"ada"}
	// 400 invalid_argument
	// 401 unauthenticated
	// 403 permission_denied
}

// A service in its own process joins a broker that listens on TCP, with
// the credentials the host hands out for its name.
func Example_serviceProcess() {
	ctx := context.Background()
	host, err := broker.Start(ctx,
		broker.WithListen("127.0.0.1:0"),
		broker.WithServiceAuth(broker.ServiceAuth{Secret: []byte("keep-this-secret-in-your-config")}))
	if err != nil {
		panic(err)
	}
	defer host.Close()
	creds, _ := host.ServiceCredentials("greeter")
	url := host.ClientURL()

	// In the service's process: connect with the service's credentials.
	svcBroker, err := broker.Connect(ctx, []string{url}, broker.WithUserInfo(creds.User, creds.Password))
	if err != nil {
		panic(err)
	}
	defer svcBroker.Close()
	svc, err := mesh.NewService(svcBroker.Conn(), "greeter")
	if err != nil {
		panic(err)
	}
	defer svc.Stop(ctx)
	_ = svc.Handle("hello", mesh.Func(func(ctx context.Context, in struct{ Name string }) (string, error) {
		return "hello, " + in.Name, nil
	}))

	// Back in the host: call it from Go (the gateway does the same).
	client, _ := mesh.NewClient(host.Conn())
	out, err := mesh.InvokeJSON[string](ctx, client, "greeter", "hello", map[string]string{"name": "Ada"})
	fmt.Println(out, err)

	// The greeter's credentials cannot register as another service.
	_, err = mesh.NewService(svcBroker.Conn(), "payments")
	fmt.Println(err != nil)
	// Output:
	// hello, Ada <nil>
	// true
}
