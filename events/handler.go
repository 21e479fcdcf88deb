package events

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/funcmesh/funcmesh/reqctx"
	"github.com/funcmesh/funcmesh/transport"
)

// DefaultService is the service name under which events are emitted over
// HTTP unless [Handler.Service] says otherwise.
const DefaultService = "events"

// Handler emits events over HTTP. It is mounted where the gateway is, on
// the same chain, wrapping it, so that an emit is policy-checked like
// every call:
//
//	emit := &events.Handler{Events: ev, Next: async}
//	mux.Handle("POST /fn/{service}/{function}", chain.Then(emit))
//
// A POST to /fn/events/<type> emits an event of that type with the body as
// its data (and Content-Type as its media type) and answers 202 Accepted
// with {"id": "<event ID>"}; the policy sees it as a call of the function
// <type> of the service "events", with the caller's claims. An
// Idempotency-Key header becomes part of the event ID, so that a client's
// retry emits once. Every other request goes to Next.
type Handler struct {
	// Events emits; required.
	Events *Events
	// Next serves every request that is not an emit; nil answers 404.
	Next http.Handler
	// Service is the service name of emits; default DefaultService. A
	// real service of that name cannot be called through this handler.
	Service string
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	svc := h.Service
	if svc == "" {
		svc = DefaultService
	}
	if r.Method != http.MethodPost || r.PathValue("service") != svc {
		if h.Next == nil {
			http.NotFound(w, r)
			return
		}
		h.Next.ServeHTTP(w, r)
		return
	}
	// The data is bounded by middleware.BodyLimit's limit (413 above).
	limit, _ := reqctx.MaxBodyBytes(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			transport.WriteHTTPError(w, transport.Errorf(transport.CodeTooLarge, "event data larger than %d bytes", limit))
			return
		}
		transport.WriteHTTPError(w, transport.WrapError(transport.CodeInvalidArgument, "the body could not be read", err))
		return
	}
	ev := Event{Type: r.PathValue("function"), Data: body, ContentType: r.Header.Get("Content-Type")}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > 256 {
			transport.WriteHTTPError(w, transport.NewError(transport.CodeInvalidArgument, "Idempotency-Key longer than 256 bytes"))
			return
		}
		ev.ID = "k" + idToken(ownerOf(r)+"\x00"+ev.Type+"\x00"+key)
	}
	id, err := h.Events.Emit(r.Context(), ev)
	if err != nil {
		transport.WriteHTTPError(w, err)
		return
	}
	b, _ := json.Marshal(map[string]string{"id": id})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(append(b, '\n'))
}

// ownerOf is who emits over HTTP: the verified claims, "" if anonymous.
func ownerOf(r *http.Request) string {
	raw, _ := reqctx.ClaimsJSON(r.Context())
	return string(raw)
}
