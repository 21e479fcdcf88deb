package main

import (
	"fmt"
	"io"
	"text/template"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// demoText is what the quickstart prints once it serves: a demo token and
// one curl command per outcome. Each command follows a "# <status>" line
// saying what it answers (the tests run every command and check it).
var demoText = template.Must(template.New("demo").Parse(`funcmesh quickstart: the gateway listens on {{.URL}}
services greeter (hello, welcome) and accounts (me, profile) are running.

A demo token for user "ada" (HS256, the demo secret, valid for 24 hours):

TOKEN='{{.Token}}'

Paste these into a shell (bash, zsh) after the line above:

# 200 OK: greeter.hello is open to anyone; a typed function
curl -i -X POST {{.URL}}/fn/greeter/hello -d '{"name":"Ada"}'

# 200 OK: greeter.welcome calls accounts.me; your claims and the request ID travel on
curl -i -X POST -H "Authorization: Bearer $TOKEN" {{.URL}}/fn/greeter/welcome

# 200 OK: your own profile
curl -i -X POST -H "Authorization: Bearer $TOKEN" {{.URL}}/fn/accounts/profile -d '{"user":"ada"}'

# 403 Forbidden: someone else's profile; rules.json allows it, policy.rego does not
curl -i -X POST -H "Authorization: Bearer $TOKEN" {{.URL}}/fn/accounts/profile -d '{"user":"grace"}'

# 401 Unauthorized: accounts needs a signed-in caller, and this call has no token
curl -i -X POST {{.URL}}/fn/accounts/me

# 503 Service Unavailable: rules.json lets you call billing, but no instance of it runs
curl -i -X POST -H "Authorization: Bearer $TOKEN" {{.URL}}/fn/billing/invoices

# 202 Accepted: an async call, stored in JetStream; GET its Location (with the token) for its status
curl -i -X POST -H "Authorization: Bearer $TOKEN" -H "Prefer: respond-async" {{.URL}}/fn/mail/welcome -d '{"email":"ada@example.com"}'

# 202 Accepted: a signup event; its trigger sends the welcome email (mail.welcome)
curl -i -X POST -H "Authorization: Bearer $TOKEN" {{.URL}}/fn/events/signup -d '{"email":"ada@example.com"}'

# 200 OK: the running services, their functions and instances
curl -i {{.URL}}/fn

Or open this in a browser: the web example, signed in as ada:
{{.URL}}/#token={{.Token}}

Ctrl-C stops everything gracefully.
`))

// printDemo signs a demo token and prints the demo text for the gateway at
// url.
func printDemo(w io.Writer, url string) error {
	now := time.Now()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":  "ada",
		"name": "Ada Lovelace",
		"role": "user",
		"iat":  now.Unix(),
		"exp":  now.Add(24 * time.Hour).Unix(),
	}).SignedString(demoSecret)
	if err != nil {
		return fmt.Errorf("signing the demo token: %w", err)
	}
	return demoText.Execute(w, struct{ URL, Token string }{url, token})
}
