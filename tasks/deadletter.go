package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/transport"
)

// DeadLetter is a task that failed for good.
type DeadLetter struct {
	ID       string
	Service  string
	Function string
	Params   []byte
	// Error is the last attempt's error, or why the task was refused.
	Error    StatusError
	Attempts int
	Failed   time.Time
	// Seq is the dead letter's sequence in the stream FM_TASKS_DEAD.
	Seq uint64
}

// deadLetter stores tk with the error and attempts of st.
func (t *Tasks) deadLetter(ctx context.Context, tk *task, st *Status, seq uint64) error {
	h := tk.header()
	eb, _ := json.Marshal(st.Error)
	h[hError] = []string{string(eb)}
	h[hAttempts] = []string{strconv.Itoa(st.Attempts)}
	msg := &nats.Msg{Subject: deadPrefix + tk.service + "." + tk.function + "." + tk.id, Header: h, Data: tk.params}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// One dead letter per task message (its stream sequence), however
	// often its failure is delivered.
	_, err := t.js.PublishMsg(pctx, msg, jetstream.WithMsgID("dead."+strconv.FormatUint(seq, 10)))
	return err
}

// deadLetterInvalid stores a message that is not a task at all.
func (t *Tasks) deadLetterInvalid(ctx context.Context, msg jetstream.Msg, reason string) {
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if k != "Nats-Msg-Id" {
			h[k] = v
		}
	}
	eb, _ := json.Marshal(StatusError{Code: transport.CodeInvalidArgument, Status: 400, Message: reason})
	h[hError] = []string{string(eb)}
	h["Fm-Subject"] = []string{msg.Subject()}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = t.js.PublishMsg(pctx, &nats.Msg{Subject: deadPrefix + "invalid.task." + newID(), Header: h, Data: msg.Data()})
}

// DeadLetters returns up to limit dead letters, oldest first, starting
// after sequence after (0: from the first).
func (t *Tasks) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	info, err := t.dead.Info(ctx)
	if err != nil {
		return nil, transport.WrapError(transport.CodeUnavailable, "dead letters unavailable", err)
	}
	var out []DeadLetter
	seq := max(after+1, info.State.FirstSeq)
	for ; seq <= info.State.LastSeq && len(out) < limit; seq++ {
		m, err := t.dead.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, transport.WrapError(transport.CodeUnavailable, "dead letters unavailable", err)
		}
		out = append(out, deadLetterOf(m))
	}
	return out, nil
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	dl := DeadLetter{Seq: m.Sequence, Failed: m.Time, Params: m.Data}
	_ = json.Unmarshal([]byte(m.Header.Get(hError)), &dl.Error)
	dl.Attempts, _ = strconv.Atoi(m.Header.Get(hAttempts))
	if tk, err := decodeTask(m.Subject[len(deadPrefix)-1:], m.Header, m.Data); err == nil {
		dl.ID, dl.Service, dl.Function = tk.id, tk.service, tk.function
	}
	return dl
}

// ErrNotReplayable is the error of [Tasks.Replay] for a dead letter whose
// claims signature does not hold: it was altered, and will not run.
var ErrNotReplayable = transport.NewError(transport.CodePermissionDenied, "the dead letter's signature does not hold; it cannot be replayed")

// Replay enqueues the dead letter of task id again, under the same ID and
// with the same claims, params and settings, with every attempt available
// again, and removes the dead letter. Its status is pending again.
func (t *Tasks) Replay(ctx context.Context, id string) (Receipt, error) {
	if !ValidID(id) {
		return Receipt{}, ErrNotFound
	}
	m, err := t.dead.GetLastMsgForSubject(ctx, deadPrefix+"*.*."+id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Receipt{}, ErrNotFound
	}
	if err != nil {
		return Receipt{}, transport.WrapError(transport.CodeUnavailable, "dead letters unavailable", err)
	}
	tk, err := decodeTask(m.Subject[len(deadPrefix)-1:], m.Header, m.Data)
	if err != nil {
		return Receipt{}, ErrNotReplayable
	}
	if err := tk.verify(t.opts.Signer, time.Now()); err != nil && !errors.Is(err, transport.ErrClaimsExpired) {
		return Receipt{}, ErrNotReplayable
	}
	now := time.Now()
	tk.expires = time.UnixMilli(now.Add(t.opts.Retention).UnixMilli())
	tk.sign(t.opts.Signer)
	if err := t.ensureConsumer(ctx, tk.service, tk.function); err != nil {
		return Receipt{}, err
	}
	h := tk.header()
	h[hReplay] = []string{strconv.FormatUint(m.Sequence, 10)}
	st := &Status{ID: tk.id, Service: tk.service, Function: tk.function, State: StatePending,
		Enqueued: tk.enqueued, Updated: now, Owner: ownerKey(owner(tk.claims))}
	if err := t.putStatus(ctx, st); err != nil {
		return Receipt{}, transport.WrapError(transport.CodeUnavailable, "task status unavailable", err)
	}
	// Nats-Msg-Id of a replay is the dead letter's: replaying it twice
	// enqueues it once.
	if _, err := t.js.PublishMsg(ctx, &nats.Msg{Subject: tk.subject(), Header: h, Data: tk.params},
		jetstream.WithMsgID(tk.id+".replay."+strconv.FormatUint(m.Sequence, 10))); err != nil {
		return Receipt{}, storeError(err)
	}
	if err := t.dead.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return Receipt{}, transport.WrapError(transport.CodeUnavailable, "the dead letter could not be removed", err)
	}
	return Receipt{ID: tk.id, At: now}, nil
}
