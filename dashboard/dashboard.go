// Package dashboard is a live view of a functions mesh for the people who
// run it: the services on the bus, their instances (version, ID, since
// when), and per function the calls, errors and average latency that the
// instances report in their $SRV.STATS answers. It is an http.Handler the
// host mounts where it wants:
//
//	dash, err := dashboard.New(nc, dashboard.Options{})
//	mux.Handle("GET /admin/mesh/", http.StripPrefix("/admin/mesh", adminOnly(dash)))
//
// The page shows the names, versions and error messages of every service,
// which are for operators only: the host MUST mount it behind its own
// authentication and authorization (adminOnly above), never on a public
// route. The handler checks nothing itself.
//
// The page is HTML rendered on the server, with a little script that
// refreshes it in place and no asset from anywhere else, so it works
// offline and on a phone. The same data is JSON with ?format=json.
//
// With [Options.Tasks] the page also lists the durable calls' dead letters,
// each with a Replay button; with [Options.Schedules] it lists the
// schedules (the first [Options.MaxSchedules] by name), when each fires
// next and how its last tick went.
//
// Counts come from each instance: a funcmesh service reports the calls its
// functions ran, their errors, refusals at its concurrency limit, panics
// and processing time in its stats data ([mesh.EndpointStats]); a service
// of another kind (any NATS micro service on the mesh's subjects) reports
// micro's request and error counts, processing time and last error. The
// average latency shown is the processing time over the calls. Funcmesh
// services do not report a last error (its text may be private). Counts
// start at zero when an instance starts and vanish when it stops. Each
// service is asked on its own subject ($SRV.STATS.<name>), which with
// per-service credentials no other service may take, and only answers
// that name that service and an instance discovery found are counted: a
// service cannot report the counts of another.
package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// Options configures a [Handler]; the zero value of each field means its
// default.
type Options struct {
	// Prefix is the mesh's subject prefix, transport.DefaultPrefix ("fn")
	// by default.
	Prefix string

	// Window is how long a snapshot waits for the instances' answers:
	// 250ms by default. An instance slower than that is missing from it.
	Window time.Duration

	// MinInterval is the least time between two snapshots: requests in
	// between get the last one, so that many open pages cost the bus no
	// more than one. One second by default.
	MinInterval time.Duration

	// Refresh is how often the page refreshes itself: every 2 seconds by
	// default; negative turns it off.
	Refresh time.Duration

	// Title heads the page: "funcmesh" by default.
	Title string

	// Tasks, when set, adds the durable calls' dead letters to the page
	// (the oldest MaxDeadLetters of them), each with a Replay button that
	// enqueues it again ([tasks.Tasks.Replay]). nil shows none.
	Tasks *tasks.Tasks

	// MaxDeadLetters bounds the dead letters shown: 50 by default.
	MaxDeadLetters int

	// Schedules, when set, adds the periodic calls to the page: each
	// schedule's name, spec, time zone, function and overlap, when it
	// fires next and how its last tick went (never its params or claims).
	// nil shows none.
	Schedules *schedules.Schedules

	// MaxSchedules bounds the schedules shown, the first by name: 100 by
	// default. Only those are read from the broker.
	MaxSchedules int
}

// Handler serves the dashboard. Create it with [New]; it is safe for
// concurrent use.
type Handler struct {
	nc      *nats.Conn
	disc    *mesh.Discovery
	prefix  string
	window  time.Duration
	min     time.Duration
	refresh time.Duration
	title   string
	tasks   *tasks.Tasks
	maxDead int
	scheds  *schedules.Schedules
	maxSch  int
	csrf    *http.CrossOriginProtection

	mu   sync.Mutex // held while a snapshot is taken, so one runs at a time
	last *Snapshot
}

// New returns the dashboard of the mesh on nc.
func New(nc *nats.Conn, opts Options) (*Handler, error) {
	if nc == nil {
		return nil, errors.New("dashboard: New: nil connection")
	}
	h := &Handler{
		nc:      nc,
		prefix:  opts.Prefix,
		window:  opts.Window,
		min:     opts.MinInterval,
		refresh: opts.Refresh,
		title:   opts.Title,
		tasks:   opts.Tasks,
		maxDead: opts.MaxDeadLetters,
		scheds:  opts.Schedules,
		maxSch:  opts.MaxSchedules,
		csrf:    http.NewCrossOriginProtection(),
	}
	if h.maxDead <= 0 {
		h.maxDead = 50
	}
	if h.maxSch <= 0 {
		h.maxSch = 100
	}
	if h.prefix == "" {
		h.prefix = transport.DefaultPrefix
	}
	if h.window <= 0 {
		h.window = 250 * time.Millisecond
	}
	if h.min <= 0 {
		h.min = time.Second
	}
	if h.refresh == 0 {
		h.refresh = 2 * time.Second
	}
	if h.title == "" {
		h.title = "funcmesh"
	}
	var err error
	h.disc, err = mesh.NewDiscovery(nc, mesh.WithPrefix(h.prefix), mesh.WithDiscoveryWindow(h.window))
	if err != nil {
		return nil, err
	}
	return h, nil
}

// Snapshot returns the state of the mesh, taking a new snapshot unless the
// last is younger than Options.MinInterval.
func (h *Handler) Snapshot(ctx context.Context) (*Snapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last != nil && time.Since(h.last.At) < h.min {
		return h.last, nil
	}
	s, err := h.collect(ctx)
	if err != nil {
		return nil, err
	}
	if h.tasks != nil {
		s.DeadLetters = &DeadLetters{}
		dl, err := h.tasks.DeadLetters(ctx, 0, h.maxDead+1)
		if err != nil {
			s.DeadLetters.Error = transport.AsError(err).Message()
		}
		if len(dl) > h.maxDead {
			dl, s.DeadLetters.More = dl[:h.maxDead], true
		}
		s.DeadLetters.List = dl
	}
	if h.scheds != nil {
		s.Schedules = &Schedules{List: []Schedule{}}
		list, more, err := h.scheds.ListFirst(ctx, h.maxSch)
		s.Schedules.More = more
		if err != nil {
			s.Schedules.Error = transport.AsError(err).Message()
		}
		for _, in := range list {
			s.Schedules.List = append(s.Schedules.List, schedule(in))
		}
	}
	h.last = s
	return s, nil
}

// ServeHTTP answers GET and HEAD: the page; with ?view=content only the
// part the page's script swaps in when it refreshes; with ?format=json
// the [Snapshot] as JSON. With Options.Tasks, a POST of the form field
// replay=<task ID> from the page itself replays that dead letter and
// redirects back (303); a POST from another site (checked with
// http.CrossOriginProtection) is 403. Other methods get 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && h.tasks != nil {
		h.replay(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if h.tasks != nil {
			w.Header().Set("Allow", "GET, HEAD, POST")
			transport.WriteHTTPError(w, transport.ErrorWithStatus(http.StatusMethodNotAllowed, "method not allowed"))
			return
		}
		w.Header().Set("Allow", "GET, HEAD")
		transport.WriteHTTPError(w, transport.ErrorWithStatus(http.StatusMethodNotAllowed, "method not allowed"))
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")

	snap, err := h.Snapshot(r.Context())
	if err != nil {
		transport.WriteHTTPError(w, transport.WrapError(transport.CodeUnavailable, "asking the services failed", err))
		return
	}
	q := r.URL.Query()
	if q.Get("format") == "json" {
		b, err := json.Marshal(snap)
		if err != nil {
			transport.WriteHTTPError(w, err)
			return
		}
		hd.Set("Content-Type", "application/json")
		if r.Method != http.MethodHead {
			_, _ = w.Write(append(b, '\n'))
		}
		return
	}

	nonce := newNonce()
	// Nothing but this response's own style and script may run, nothing
	// loads from elsewhere, and no other site may frame the page.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+
		"'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	name := "page"
	if q.Get("view") == "content" {
		name = "content"
	}
	data := pageData{
		Title:     h.title,
		Nonce:     nonce,
		RefreshMs: h.refresh.Milliseconds(),
		Snap:      snap,
		Now:       time.Now(),
	}
	if id := q.Get("replayed"); tasks.ValidID(id) {
		data.Replayed = id
	}
	_ = pageTemplate.ExecuteTemplate(w, name, data)
}

// replay replays the dead letter the form names.
func (h *Handler) replay(w http.ResponseWriter, r *http.Request) {
	if err := h.csrf.Check(r); err != nil {
		transport.WriteHTTPError(w, transport.WrapError(transport.CodePermissionDenied, "cross-origin request refused", err))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	id := r.PostFormValue("replay")
	if !tasks.ValidID(id) {
		transport.WriteHTTPError(w, transport.NewError(transport.CodeInvalidArgument, "replay: not a task ID"))
		return
	}
	if _, err := h.tasks.Replay(r.Context(), id); err != nil {
		transport.WriteHTTPError(w, err)
		return
	}
	h.mu.Lock()
	h.last = nil // the next page shows the change
	h.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	// A reference relative to the page's own URL, wherever the host
	// mounted it (http.Redirect would resolve it against the path the
	// handler sees, which lacks the host's prefix).
	w.Header().Set("Location", "?replayed="+url.QueryEscape(id))
	w.WriteHeader(http.StatusSeeOther)
}

func newNonce() string {
	var b [18]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}
