package spacecloud_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/funcmesh/funcmesh/transport"
)

func TestResult(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	for _, path := range []string{"services", "functions"} {
		res := h.do(t, http.MethodPost, "/v1/api/"+testProject+"/"+path+"/greeter/hello", `{"params": {"name": "Ada"}, "timeout": 5}`)
		a := res.answer(t)
		if res.status != http.StatusOK || string(a.Result) != `{"greeting":"Hello, Ada!","from":"go"}` {
			t.Errorf("/%s/greeter/hello: %d %s; want 200 {\"result\": {\"greeting\":\"Hello, Ada!\",\"from\":\"go\"}}", path, res.status, res.body)
		}
		if res.header.Get(transport.HeaderXRequestID) == "" {
			t.Errorf("/%s/greeter/hello: no %s header", path, transport.HeaderXRequestID)
		}
	}

	tests := []struct {
		name, fn, envelope, want string
	}{
		{"no params", "hello", `{}`, `{"greeting":"Hello, world!","from":"go"}`},
		{"null params", "hello", `{"params": null}`, `{"greeting":"Hello, world!","from":"go"}`},
		{"empty body", "hello", ``, `{"greeting":"Hello, world!","from":"go"}`},
		{"unknown members ignored", "hello", `{"params": {"name": "Bo"}, "project": "x", "extra": [1]}`, `{"greeting":"Hello, Bo!","from":"go"}`},
		// The function gets the params alone, as sent, as JSON.
		{"params unwrapped", "echo", `{"params": [1, {"a": "b"}], "timeout": 3}`, `{"contentType":"application/json","params":"[1, {\"a\": \"b\"}]"}`},
		{"a scalar", "echo", `{"params": 42}`, `{"contentType":"application/json","params":"42"}`},
		{"a text result becomes a string", "text", `{}`, `"plain \"text\""`},
	}
	for _, tt := range tests {
		res := h.call(t, "greeter", tt.fn, tt.envelope)
		if a := res.answer(t); res.status != http.StatusOK || string(a.Result) != tt.want {
			t.Errorf("%s: %d %s; want 200 result %s", tt.name, res.status, res.body, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	ada := token(t, jwt.MapClaims{"sub": "ada"})
	tests := []struct {
		name, fn, envelope string
		hdr                []string
		status             int
		message            string // "" checks only that there is one
	}{
		{"the policy denies", "secret", `{}`, nil, 403, ""},
		{"the policy needs a signed-in caller", "whoami", `{}`, nil, 401, ""},
		{"an invalid token", "hello", `{}`, []string{"Authorization", "Bearer forged"}, 401, "invalid token"},
		{"the function's own status", "conflict", `{}`, nil, 409, "the todo was changed meanwhile"},
		{"the function failed: internals stay inside", "broken", `{}`, nil, 500, "internal error"},
		{"no such function", "nothing", `{}`, nil, 404, ""},
		{"the caller's timeout passes", "slow", `{"timeout": 0.5}`, nil, 504, "deadline exceeded"},
		{"params a typed function cannot decode", "hello", `{"params": {"name": 5}}`, nil, 400, ""},
		{"envelope not JSON", "hello", `params=1`, nil, 400, `request body: want a JSON object {"params": ..., "timeout": seconds}`},
		{"envelope not an object", "hello", `[{"params": 1}]`, nil, 400, ""},
		{"envelope null", "hello", `null`, nil, 400, ""},
		{"envelope with trailing data", "hello", `{"params": 1} {}`, nil, 400, ""},
		{"timeout a string", "hello", `{"timeout": "5"}`, nil, 400, "timeout: want a number of seconds"},
		{"timeout negative", "hello", `{"timeout": -1}`, nil, 400, "timeout: want 0 or more seconds"},
		{"a bad service name", "a.b", `{}`, nil, 400, ""},
		{"body over the limit", "hello", `{"params": "` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, ""},
	}
	for _, tt := range tests {
		res := h.call(t, "greeter", tt.fn, tt.envelope, tt.hdr...)
		a := res.answer(t)
		if res.status != tt.status || a.Error == nil || *a.Error == "" || tt.message != "" && *a.Error != tt.message {
			t.Errorf("%s: %d %s; want %d with {\"error\": %q}", tt.name, res.status, res.body, tt.status, tt.message)
		}
		if strings.Contains(string(res.body), "hunter2") {
			t.Errorf("%s: the answer shows the function's internal error: %s", tt.name, res.body)
		}
	}
	if res := h.call(t, "greeter", "hello", `{}`, "Authorization", "Bearer forged"); res.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
	if got := h.served(); !slices.Equal(got, []string{"greeter.conflict", "greeter.broken", "greeter.slow", "greeter.hello"}) {
		// Only the calls the policy allowed with a valid envelope reach
		// the function (hello: the typed decode fails inside it).
		t.Errorf("greeter served %v; want conflict, broken, slow, hello", got)
	}

	if res := h.call(t, "absent", "fn", `{}`); res.status != http.StatusServiceUnavailable || res.answer(t).Error == nil {
		t.Errorf("a service that is not running: %d %s; want 503 with an error", res.status, res.body)
	}
	if res := h.call(t, "greeter", "whoami", `{}`, "Authorization", "Bearer "+ada); res.status != 200 {
		t.Errorf("whoami with a token: %d %s; want 200", res.status, res.body)
	}
}

// TestPolicySeesParams: the policy decides on the params inside the
// envelope, exactly as on the native route with the same params.
func TestPolicySeesParams(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	for _, tt := range []struct {
		params string
		status int
	}{
		{`{"amount": 100}`, 200},
		{`{"amount": 100.0000000000000001}`, 403}, // exact decimals: a float64 would round it to 100
		{`{"amount": 101}`, 403},
		{`{"amount": "5"}`, 403},
		{`{"amount": 5, "AMOUNT": 5000}`, 400},
		{`{}`, 403},
	} {
		sc := h.call(t, "greeter", "charge", `{"params": `+tt.params+`}`)
		native := h.do(t, http.MethodPost, "/fn/greeter/charge", tt.params)
		if sc.status != tt.status || native.status != tt.status {
			t.Errorf("charge %s: Space Cloud endpoint %d %s, native route %d %s; want %d on both", tt.params, sc.status, sc.body, native.status, native.body, tt.status)
		}
		if tt.status == 200 {
			if a := sc.answer(t); string(a.Result) != `{"charged":`+tt.params+`}` {
				t.Errorf("charge %s: result %s; want the params unchanged", tt.params, a.Result)
			}
		}
	}
}

// TestExactIDs: a rule comparing an ID in the params with one in the
// claims compares the numbers as written; as float64s, Space Cloud's
// way, 2⁵³+1 would pass for 2⁵³.
func TestExactIDs(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	owner := token(t, jwt.MapClaims{"sub": "ada", "id": json.Number("9007199254740993")})
	for params, status := range map[string]int{
		`{"user": 9007199254740993}`: 200,
		`{"user": 9007199254740992}`: 403,
		`{"user": 9007199254740994}`: 403,
	} {
		if res := h.call(t, "greeter", "own", `{"params": `+params+`}`, "Authorization", "Bearer "+owner); res.status != status || res.answer(t).Error == nil && status != 200 {
			t.Errorf("own %s with id 9007199254740993 in the token: %d %s; want %d", params, res.status, res.body, status)
		}
	}
}

// TestTimeout: the envelope's timeout, in seconds as Space Cloud's server
// read it, is the caller-set timeout: it shortens the deadline, never
// extends the gateway's.
func TestTimeout(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	for _, tt := range []struct {
		envelope string
		want     time.Duration
	}{
		{`{"timeout": 2}`, 2 * time.Second},
		{`{"timeout": 1.5}`, 1500 * time.Millisecond},
		{`{}`, gatewayMax},
		{`{"timeout": 0}`, gatewayMax},
		{`{"timeout": 5000}`, gatewayMax}, // space-api's default
		{`{"timeout": 1e300}`, gatewayMax},
	} {
		start := time.Now()
		res := h.call(t, "greeter", "deadline", tt.envelope)
		took := time.Since(start)
		var left int64
		if err := json.Unmarshal(res.answer(t).Result, &left); res.status != 200 || err != nil {
			t.Fatalf("%s: %d %s", tt.envelope, res.status, res.body)
		}
		if got := time.Duration(left) * time.Millisecond; got > tt.want || got < tt.want-took-2*time.Millisecond { // Mesh-Deadline and Milliseconds both round down
			t.Errorf("%s: the function had %v left; want %v less the %v the call took", tt.envelope, got, tt.want, took)
		}
	}
	// The envelope's timeout replaces a Mesh-Timeout-Ms header.
	res := h.call(t, "greeter", "deadline", `{"timeout": 1}`, transport.HeaderTimeoutMs, "15000")
	var left int64
	if err := json.Unmarshal(res.answer(t).Result, &left); err != nil || left > 1000 {
		t.Errorf("timeout 1 with %s 15000: %d %s; want at most 1000 ms left", transport.HeaderTimeoutMs, res.status, res.body)
	}
}

func TestProjectAndMethod(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	if res := h.do(t, http.MethodPost, "/v1/api/other-app/services/greeter/hello", `{}`); res.status != 404 || res.answer(t).Error == nil {
		t.Errorf("another project: %d %s; want 404 with an error", res.status, res.body)
	}
	res := h.do(t, http.MethodGet, "/v1/api/"+testProject+"/services/greeter/hello", ``)
	if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != http.MethodPost || res.answer(t).Error == nil {
		t.Errorf("GET: %d %v %s; want 405, Allow: POST and an error", res.status, res.header, res.body)
	}
	if got := h.served(); len(got) != 0 {
		t.Errorf("greeter served %v; want nothing", got)
	}

	// A browser's preflight reaches the chain's CORS middleware.
	res = h.do(t, http.MethodOptions, "/v1/api/"+testProject+"/services/greeter/hello", ``,
		"Origin", testOrigin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if res.status/100 != 2 || res.header.Get("Access-Control-Allow-Origin") != testOrigin {
		t.Errorf("preflight: %d %v; want 2xx allowing %s", res.status, res.header, testOrigin)
	}
	// And the call itself carries the CORS headers.
	res = h.call(t, "greeter", "hello", `{}`, "Origin", testOrigin)
	if res.status != 200 || res.header.Get("Access-Control-Allow-Origin") != testOrigin {
		t.Errorf("call from %s: %d %v; want 200 with Access-Control-Allow-Origin", testOrigin, res.status, res.header)
	}

	// Without Project, any project ID is served.
	any := newHost(t, "")
	if res := any.do(t, http.MethodPost, "/v1/api/whatever/services/greeter/hello", `{}`); res.status != 200 {
		t.Errorf("any project: %d %s; want 200", res.status, res.body)
	}
}

// TestCrossSiteForm: the endpoint is no way around the chain's
// cross-origin protection. A page on another site posting a Space Cloud
// envelope as a form, with the user's session cookie, is refused before
// the function runs; the app's own origin is served.
func TestCrossSiteForm(t *testing.T) {
	t.Parallel()
	h := newHost(t, testProject)
	cookie := "session=" + token(t, jwt.MapClaims{"sub": "ada"})
	envelope := `{"params": {"amount": 50}, "x": "="}` // what <form enctype=text/plain> can send
	res := h.call(t, "greeter", "whoami", envelope, "Cookie", cookie, "Content-Type", "text/plain",
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if res.status != http.StatusForbidden || res.answer(t).Error == nil {
		t.Errorf("cross-site form with the session cookie: %d %s; want 403 with an error", res.status, res.body)
	}
	if got := h.served(); len(got) != 0 {
		t.Errorf("greeter served %v for a cross-site form; want nothing", got)
	}
	res = h.call(t, "greeter", "whoami", envelope, "Cookie", cookie, "Origin", testOrigin, "Sec-Fetch-Site", "same-site")
	var who struct {
		Result struct{ Claims map[string]any } `json:"result"`
	}
	if err := json.Unmarshal(res.body, &who); res.status != 200 || err != nil || who.Result.Claims["sub"] != "ada" {
		t.Errorf("from %s with the session cookie: %d %s; want 200 with ada's claims", testOrigin, res.status, res.body)
	}
}
