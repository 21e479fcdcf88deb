package tasks

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// Handler takes async calls over HTTP. Mount it where the gateway is, on
// the same chain (authentication, then the policy), wrapping the gateway:
//
//	async := &tasks.Handler{Tasks: q, Next: gw, StatusPath: "/tasks/"}
//	mux.Handle("POST /fn/{service}/{function}", chain.Then(async))
//	mux.Handle("GET /tasks/{id}", authn.Then(q.StatusHandler()))
//
// A POST whose Prefer header asks for respond-async (RFC 7240) is
// enqueued, with the request's claims and request ID, and answered
// 202 Accepted with the task ID, the Location of its status and
// Preference-Applied: respond-async; an Idempotency-Key header makes it
// idempotent (see [Call.IdempotencyKey]). Every other request goes to
// Next unchanged. Since the policy runs before the handler, a denied async
// call is answered by the policy and nothing is stored.
type Handler struct {
	// Tasks stores the calls; required.
	Tasks *Tasks
	// Next serves the requests that are not async; nil answers them 404.
	Next http.Handler
	// StatusPath is the path the task ID is appended to in Location.
	// Default "/tasks/".
	StatusPath string
	// Route returns the service and function of a request, as
	// mesh.Gateway.Route does; nil reads the path values "service" and
	// "function".
	Route func(r *http.Request) (service, function string)
}

// Accepted is the JSON body of a 202 answer.
type Accepted struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// PreferAsync reports whether an HTTP request's Prefer header asks for
// respond-async.
func PreferAsync(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			p, _, _ = strings.Cut(p, ";")
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !PreferAsync(r.Header) {
		if h.Next == nil {
			http.NotFound(w, r)
			return
		}
		h.Next.ServeHTTP(w, r)
		return
	}
	if h.Tasks == nil {
		panic("tasks: Handler.Tasks is nil")
	}
	ctx := reqctx.EnsureRequestID(r.Context(), w.Header())
	var service, function string
	if h.Route != nil {
		service, function = h.Route(r)
	} else {
		service, function = r.PathValue("service"), r.PathValue("function")
	}
	// The params are bounded by middleware.BodyLimit's limit (413 above).
	limit, _ := reqctx.MaxBodyBytes(ctx)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			transport.WriteHTTPError(w, transport.Errorf(transport.CodeTooLarge, "params larger than %d bytes", limit))
			return
		}
		transport.WriteHTTPError(w, transport.WrapError(transport.CodeInvalidArgument, "the body could not be read", err))
		return
	}
	rc, err := h.Tasks.Enqueue(ctx, Call{
		Service:        service,
		Function:       function,
		Params:         body,
		ContentType:    r.Header.Get("Content-Type"),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	})
	if err != nil {
		transport.WriteHTTPError(w, err)
		return
	}
	path := h.StatusPath
	if path == "" {
		path = "/tasks/"
	}
	loc := path + rc.ID
	b, _ := json.Marshal(Accepted{ID: rc.ID, Status: loc, Duplicate: rc.Duplicate})
	hd := w.Header()
	hd.Set("Location", loc)
	hd.Set("Preference-Applied", "respond-async")
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(append(b, '\n'))
}

// StatusHandler answers GET with the JSON [Status] of the task named by
// the path value "id", to the caller that enqueued it (the same "iss" and
// "sub" claims, read with [reqctx.ClaimsJSON]; a task enqueued anonymously
// is readable with its ID alone). An unknown task, an expired status and
// another caller's task are all 404, so that a status never tells a
// stranger that a task exists.
func (t *Tasks) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			transport.WriteHTTPError(w, transport.ErrorWithStatus(http.StatusMethodNotAllowed, "method not allowed: read a task's status with GET"))
			return
		}
		st, err := t.Status(r.Context(), r.PathValue("id"))
		if err != nil {
			transport.WriteHTTPError(w, err)
			return
		}
		var who string
		if raw, ok := reqctx.ClaimsJSON(r.Context()); ok {
			who = string(raw)
		}
		if st.Owner != ownerKey(owner(who)) || st.Owner == "" && st.State == StateFailed && st.Error != nil && st.Error.Code == transport.CodePermissionDenied {
			transport.WriteHTTPError(w, ErrNotFound)
			return
		}
		b, err := json.Marshal(st)
		if err != nil {
			transport.WriteHTTPError(w, err)
			return
		}
		hd := w.Header()
		hd.Set("Content-Type", "application/json")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
	})
}
