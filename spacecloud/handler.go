package spacecloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// The ServeMux patterns of Space Cloud's call API: Pattern is the path of
// Space Cloud v0.16 and later (space-api 0.16+), LegacyPattern the one
// before (space-api up to 0.15). They have no method, so that CORS
// preflights reach the chain; [Handler] answers 405 to anything but POST
// and OPTIONS.
const (
	Pattern       = "/v1/api/{project}/services/{service}/{function}"
	LegacyPattern = "/v1/api/{project}/functions/{service}/{function}"
)

// Handler serves Space Cloud's function call API in front of the host's
// own chain: it takes the Space Cloud request
//
//	POST /v1/api/{project}/services/{service}/{function}
//	Authorization: Bearer <token>
//	{"params": {...}, "timeout": <seconds>}
//
// turns it into the native call (POST with the params alone as the body,
// the timeout as the Mesh-Timeout-Ms header) for Next, and turns Next's
// answer into Space Cloud's: {"result": ...} with 200, or
// {"error": "message"} with Next's status. Next is the chain that serves
// the native route (authentication, the policy, the gateway), so a call
// made here is authorized and made exactly as the same call made there:
// the policy sees the same params, the function gets the same bytes.
//
// Like httputil.ReverseProxy it is configured by its fields, whose zero
// values are the defaults; set them before the first request.
type Handler struct {
	// Next serves the native call; it is required. The request it gets
	// has the path values "service" and "function" of [Pattern], the
	// params (never the envelope) as its body with Content-Type
	// application/json, and the envelope's timeout, when there is one, as
	// the Mesh-Timeout-Ms header. Its URL path and other headers
	// (Authorization among them) are those of the Space Cloud request.
	Next http.Handler

	// Project, when set, is the only project ID the handler serves; a
	// call naming another is answered 404. Empty serves any.
	Project string
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Next == nil {
		panic("spacecloud: Handler.Next is nil")
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		// A CORS preflight: the chain's CORS middleware answers it.
		h.Next.ServeHTTP(w, r)
		return
	default:
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: call functions with POST")
		return
	}
	if h.Project != "" && r.PathValue("project") != h.Project {
		writeError(w, http.StatusNotFound, "no such project")
		return
	}
	limit, _ := reqctx.MaxBodyBytes(r.Context())
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return
	}
	if int64(len(data)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "request body over "+strconv.FormatInt(limit, 10)+" bytes")
		return
	}
	env, err := ParseEnvelope(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	in := r.WithContext(r.Context())
	in.Header = r.Header.Clone()
	in.Header.Set("Content-Type", "application/json")
	in.Header.Del("Content-Length")
	if env.Timeout > 0 {
		in.Header.Set(transport.HeaderTimeoutMs, transport.FormatTimeout(env.Timeout))
	}
	in.Body, in.ContentLength = newParamsBody(env.Params), int64(len(env.Params))
	in.GetBody = func() (io.ReadCloser, error) { return newParamsBody(env.Params), nil }

	rec := &recorder{w: w}
	h.Next.ServeHTTP(rec, in)
	rec.finish()
}

// Envelope is a Space Cloud call's request body,
// {"params": ..., "timeout": <seconds>}.
type Envelope struct {
	// Params is the "params" member as it was sent: the JSON the
	// function gets. It is empty when the member is missing or null,
	// which the wire contract reads as null.
	Params []byte
	// Timeout is the "timeout" member, a number of seconds (fractions
	// allowed), capped at the longest [transport.HeaderTimeoutMs] holds. 0
	// (missing, null or 0) asks for none: the gateway's own deadline.
	Timeout time.Duration
}

// maxTimeout is the longest timeout Mesh-Timeout-Ms holds.
const maxTimeout = 9_999_999_999 * time.Millisecond

// ParseEnvelope decodes a Space Cloud call's request body: a JSON object
// whose "params" member is any JSON value and whose "timeout" member is a
// number of seconds, 0 or more; other members are ignored, as Space Cloud
// ignored them. An empty body is an empty object. Anything else (not
// JSON, not an object, a timeout that is negative or not a number) is an
// error whose text says what was wrong.
//
// Space Cloud's server read "timeout" as seconds while space-api's
// documentation calls it milliseconds; its call() sends 5000 when given
// none. Read as seconds, as the server did, such a value is far above any
// gateway's maximum, which then applies, as it did in Space Cloud.
func ParseEnvelope(data []byte) (Envelope, error) {
	var env Envelope
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return env, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil || trimmed[0] != '{' {
		return env, errors.New(`request body: want a JSON object {"params": ..., "timeout": seconds}`)
	}
	if p := members["params"]; len(p) > 0 && string(p) != "null" {
		env.Params = p
	}
	if t := members["timeout"]; len(t) > 0 && string(t) != "null" {
		if t[0] != '-' && (t[0] < '0' || t[0] > '9') {
			return env, errors.New("timeout: want a number of seconds")
		}
		secs, err := strconv.ParseFloat(string(t), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return env, errors.New("timeout: want a number of seconds")
		}
		if secs < 0 {
			return env, errors.New("timeout: want 0 or more seconds")
		}
		if ns := secs * float64(time.Second); ns >= float64(maxTimeout) || math.IsInf(ns, 1) {
			env.Timeout = maxTimeout
		} else if ns > 0 {
			env.Timeout = max(time.Duration(ns), time.Nanosecond)
		}
	}
	return env, nil
}

// paramsBody is the params as the native request's body: a
// mesh.BytesBody, which the gateway sends without a copy.
type paramsBody struct {
	bytes.Reader
	data []byte
}

func newParamsBody(data []byte) *paramsBody {
	b := &paramsBody{data: data}
	b.Reset(data)
	return b
}

func (b *paramsBody) Bytes() []byte { return b.data }
func (b *paramsBody) Close() error  { return nil }

// recorder holds Next's answer until it is complete, to be turned into
// Space Cloud's; the headers go to the real writer as they are set.
type recorder struct {
	w      http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(status int) {
	if status < 200 {
		// Informational answers (103 Early Hints) go out as they are.
		r.w.WriteHeader(status)
		return
	}
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}

// FlushError does nothing: the answer is written once Next has returned.
// Without it http.ResponseController would flush the real writer (found
// through Unwrap) and send a status before the answer is known.
func (r *recorder) FlushError() error { return nil }

// Unwrap returns the real writer, for http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

// finish writes Space Cloud's answer for what Next answered.
func (r *recorder) finish() {
	status := r.status
	if status == 0 {
		status = http.StatusOK // Next wrote nothing: an empty result
	}
	if status >= 300 {
		writeError(r.w, status, errorMessage(status, r.body.Bytes()))
		return
	}
	result, err := resultJSON(r.w.Header().Get("Content-Type"), r.body.Bytes())
	if err != nil {
		writeError(r.w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(r.w, http.StatusOK, "result", result)
}

// resultJSON is a successful call's result as a JSON value: a JSON result
// as it is (empty is null), a text result as a JSON string.
func resultJSON(contentType string, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if contentType == "" || mt == "application/json" || strings.HasSuffix(mt, "+json") {
		if len(bytes.TrimSpace(body)) == 0 {
			return []byte("null"), nil
		}
		if !json.Valid(body) {
			return nil, errors.New("the function's result is not valid JSON")
		}
		return body, nil
	}
	if !utf8.Valid(body) {
		return nil, errors.New("the function's result is not text: Space Cloud's API carries JSON")
	}
	return json.Marshal(string(body))
}

// errorMessage is the message of a failed call: that of the JSON error
// body funcmesh answers with, else the status's text.
func errorMessage(status int, body []byte) string {
	if e, _, err := transport.ParseHTTPError(status, body); err == nil && e.Message() != "" {
		return e.Message()
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "status " + strconv.Itoa(status)
}

func writeError(w http.ResponseWriter, status int, message string) {
	m, _ := json.Marshal(message) // a string: cannot fail
	writeJSON(w, status, "error", m)
}

// writeJSON writes {"key": value}; value is valid JSON.
func writeJSON(w http.ResponseWriter, status int, key string, value []byte) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b := make([]byte, 0, len(key)+len(value)+8)
	b = append(b, `{"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	b = append(b, value...)
	b = append(b, "}\n"...)
	_, _ = w.Write(b)
}
