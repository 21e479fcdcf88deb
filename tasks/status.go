package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/transport"
)

// State is where a task is.
type State string

// The states of a task. Pending covers a task not yet run, a delayed one
// and one waiting for its next attempt (then Attempts and Error say how the
// last went).
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	// StateSkipped is a schedule's tick that did not run because the
	// previous run was still going and the schedule's overlap is "skip".
	StateSkipped State = "skipped"
)

// Final reports whether s is succeeded or failed.
func (s State) Final() bool { return s == StateSucceeded || s == StateFailed || s == StateSkipped }

// Status is what is known of a task.
type Status struct {
	ID       string    `json:"id"`
	Service  string    `json:"service"`
	Function string    `json:"function"`
	State    State     `json:"state"`
	Attempts int       `json:"attempts"`
	Enqueued time.Time `json:"enqueued"`
	Updated  time.Time `json:"updated"`
	// Due is when a pending task runs next, when known.
	Due *time.Time `json:"due,omitempty"`
	// Result is the function's result when it is JSON and within
	// Options.MaxResultBytes; ResultBase64 holds another result that fits.
	Result       json.RawMessage `json:"result,omitempty"`
	ResultBase64 []byte          `json:"result_base64,omitempty"`
	ContentType  string          `json:"content_type,omitempty"`
	// ResultDropped is true when the result was larger than the bound.
	ResultDropped bool `json:"result_dropped,omitempty"`
	// Error is the last attempt's error.
	Error *StatusError `json:"error,omitempty"`
	// History lists the attempts' start times, oldest first (at most
	// the last 20).
	History []time.Time `json:"history,omitempty"`

	Owner string `json:"owner,omitempty"` // digest of who enqueued it
}

// StatusError is a failed attempt's error as a status shows it.
type StatusError struct {
	Code    transport.Code `json:"code"`
	Status  int            `json:"status"`
	Message string         `json:"message"`
}

// ErrNotFound is the error of [Tasks.Status] for an unknown task (or one
// whose status has expired).
var ErrNotFound = transport.NewError(transport.CodeNotFound, "no such task")

// Status returns the status of the task id.
func (t *Tasks) Status(ctx context.Context, id string) (*Status, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	st, _, err := t.loadStatus(ctx, id)
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, transport.WrapError(transport.CodeUnavailable, "task status unavailable", err)
	}
	// Not started yet: the task (or its schedule) is still in the stream.
	for _, subj := range []string{taskPrefix + "*.*." + id, schedPrefix + id} {
		m, err := t.stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, transport.WrapError(transport.CodeUnavailable, "task status unavailable", err)
		}
		subject := m.Subject
		if subj == schedPrefix+id {
			subject = m.Header.Get("Nats-Schedule-Target")
		}
		tk, err := decodeTask(subject, m.Header, m.Data)
		if err != nil || tk.verify(t.opts.Signer, time.Now()) != nil {
			return nil, ErrNotFound
		}
		st := &Status{ID: id, Service: tk.service, Function: tk.function, State: StatePending,
			Enqueued: tk.enqueued, Updated: m.Time, Owner: ownerKey(owner(tk.claims))}
		if subj == schedPrefix+id {
			due := tk.expires.Add(-t.opts.Retention)
			st.Due = &due
		}
		return st, nil
	}
	return nil, ErrNotFound
}

// errBadStatus is loadStatus's error for a stored status that is not one.
var errBadStatus = errors.New("tasks: stored status unreadable")

func (t *Tasks) loadStatus(ctx context.Context, id string) (*Status, uint64, error) {
	e, err := t.status.Get(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	var st Status
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errBadStatus, err)
	}
	return &st, e.Revision(), nil
}

// putStatus writes st; it is the last word on the task until the next
// attempt.
func (t *Tasks) putStatus(ctx context.Context, st *Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	// The bucket's subject, as KeyValue.Put publishes it (the ID is a
	// valid key).
	_, err = t.js.Publish(ctx, "$KV."+StatusBucketName+"."+st.ID, b)
	return err
}

// setResult keeps body in st within the bound.
func (t *Tasks) setResult(st *Status, body []byte, contentType string) {
	st.ContentType = contentType
	switch {
	case len(body) > t.opts.MaxResultBytes:
		st.ResultDropped = true
	case (contentType == "" || contentType == "application/json") && json.Valid(body):
		st.Result = json.RawMessage(body)
	case len(body) > 0:
		st.ResultBase64 = body
	}
}

// enqueuedSame reports whether st is the status of tk as enqueued (not of
// an earlier life of the same ID, such as a replayed dead letter).
func (st *Status) enqueuedSame(tk *task) bool { return st.Enqueued.Equal(tk.enqueued) }
