package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/funcmesh/funcmesh/broker"
)

// joinText tells the operator how services in other processes join the
// mesh, and how to call them. Printing credentials suits a demo on your own
// machine; in production hand each service its password through your
// secrets manager (the password only depends on FUNCMESH_SECRET and the
// service's name, so it can be computed ahead of time).
var joinText = template.Must(template.New("join").Parse(`existingapp: serving {{.URL}} (GET /, GET /healthz; the mesh: POST /fn/{service}/{function}, GET /fn)
NATS broker: {{.NATS}} (every client needs credentials)

Run each service in a shell of its own, with its credentials. Both the Go
service and the JavaScript one serve the service MESH_SERVICE names.
{{range .Services}}
# service {{.User}}
export NATS_URL={{$.NATS}} MESH_SERVICE={{.User}} NATS_USER={{.User}} NATS_PASSWORD={{.Password}} NATS_INBOX_PREFIX={{.InboxPrefix}}
go run ./examples/service        # or: (cd examples/nodeservice && npm ci && node service.mjs)
{{end}}
Then call them.{{if .Token}} A demo token (HS256, valid for 24 hours; set JWT_SECRET to use your own secret):

TOKEN='{{.Token}}'{{end}}

# 200 OK once greeter runs; 503 Service Unavailable while it does not
curl -i -X POST {{.URL}}/fn/greeter/hello -d '{"name":"Ada"}'

# 401 Unauthorized: whoami needs a signed-in caller
curl -i -X POST {{.URL}}/fn/greeter/whoami
{{if .Token}}
# 200 OK once greeter runs: your claims and the request ID, as the service saw them
curl -i -X POST -H "Authorization: Bearer $TOKEN" {{.URL}}/fn/greeter/whoami
{{end}}
# 403 Forbidden: the rules deny every service but greeter and nodegreeter
curl -i -X POST {{.URL}}/fn/payroll/run

# 200 OK: the running services
curl -i {{.URL}}/fn

List the services with the NATS CLI (https://github.com/nats-io/natscli), as the
host, which may do anything (service identities may only answer calls and
make nested calls on their own route):

nats --server {{.NATS}} --user {{.Host.User}} --password {{.Host.Password}} micro ls

{{if .RandomSecret}}The passwords come from a random secret and last until this process stops;
set FUNCMESH_SECRET (16 bytes or more) to keep them across restarts.
{{else}}The passwords are derived from FUNCMESH_SECRET and survive restarts.
{{end}}Ctrl-C stops the app gracefully.
`))

// printJoin prints joinText for the app at url and its broker b, with the
// credentials of services and, when demoToken, a token signed with
// jwtSecret.
func printJoin(w io.Writer, b *broker.Broker, url string, services []string, jwtSecret []byte, demoToken bool) error {
	data := struct {
		URL, NATS, Token string
		Services         []broker.Credentials
		Host             broker.Credentials
		RandomSecret     bool
	}{URL: url, NATS: b.ClientURL(), RandomSecret: os.Getenv("FUNCMESH_SECRET") == ""}
	for _, name := range services {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		creds, err := b.ServiceCredentials(name)
		if err != nil {
			return fmt.Errorf("-services: %w", err)
		}
		data.Services = append(data.Services, creds)
	}
	var err error
	if data.Host, err = b.HostCredentials(); err != nil {
		return err
	}
	if demoToken {
		now := time.Now()
		data.Token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "ada", "name": "Ada Lovelace", "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
		}).SignedString(jwtSecret)
		if err != nil {
			return err
		}
	}
	return joinText.Execute(w, data)
}

// secretFromEnv returns the secret in the environment variable name, nil
// when it is unset, and an error when it is shorter than min bytes.
func secretFromEnv(name string, min int) ([]byte, error) {
	s := os.Getenv(name)
	if s == "" {
		return nil, nil
	}
	if len(s) < min {
		return nil, fmt.Errorf("%s: %d bytes; want at least %d", name, len(s), min)
	}
	return []byte(s), nil
}

func randomSecret() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return b
}
