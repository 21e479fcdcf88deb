// Package schedules runs functions periodically (cron, @every) on
// JetStream message schedules: a schedule is one message in the tasks
// stream (FM_TASKS, subject fmsched.cron.<name>) with a Nats-Schedule
// header, and the server itself publishes a task from it at each tick.
// So a tick fires once however many hosts run, survives restarts, and
// replicates with the stream; there is no timer, loop or leader election
// of ours.
//
// Each tick is a task of package tasks (its ID made from the schedule and
// the tick's stream sequence), with that package's retries, timeout, dead
// letters and status. It runs with the schedule's configured claims, and
// tasks.Options.Authorize (the policy) decides each tick, seeing the
// caller "schedule.<name>".
//
// Specs: "@every <duration>" (whole seconds, at least 1s), "@yearly",
// "@monthly", "@weekly", "@daily", "@hourly", or six cron fields (seconds
// minutes hours day-of-month month day-of-week) in a time zone (IANA name;
// UTC by default). A wall time that a daylight-saving change skips does
// not fire that day; one that it repeats fires once.
//
// Overlap: "allow" (the default) starts a tick even while the previous one
// still runs; "skip" records the tick as skipped instead, like a
// Kubernetes CronJob's Forbid. Ticks missed while no broker ran are not
// made up: after a restart the schedule fires once and goes on from the
// next time (JetStream skips ahead).
//
// Pause and resume are not offered: JetStream has no way to pause one
// schedule message; delete the schedule and put it again instead.
package schedules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

const subjectPrefix = "fmsched.cron."

// signedFor is how long a schedule's signed claims stay valid: put it
// again (a host does at start, from its file) before then.
const signedFor = 10 * 365 * 24 * time.Hour

// Schedule is one periodic call.
type Schedule struct {
	// Name names the schedule (a valid name: transport.ValidateName).
	Name string `json:"name"`
	// Spec says when it fires (see the package documentation).
	Spec string `json:"spec"`
	// TimeZone is the IANA zone of a cron spec; empty is UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// Service and Function are called at each tick with Params.
	Service  string          `json:"service"`
	Function string          `json:"function"`
	Params   json.RawMessage `json:"params,omitempty"`
	// Claims are the identity the calls run as (a JSON object, or empty
	// for anonymous).
	Claims json.RawMessage `json:"claims,omitempty"`
	// Overlap is "allow" (default) or "skip".
	Overlap string `json:"overlap,omitempty"`
	// Retry overrides the function's settings in package tasks.
	Retry tasks.Retry `json:"-"`
}

// Info is a schedule as stored, with when it fires next and how its last
// tick went.
type Info struct {
	Schedule
	Next time.Time     `json:"next"`
	Last *tasks.Status `json:"last,omitempty"`
}

// Schedules creates, lists and deletes schedules.
type Schedules struct {
	q      *tasks.Tasks
	stream jetstream.Stream
}

// New returns Schedules on q's stream.
func New(ctx context.Context, q *tasks.Tasks) (*Schedules, error) {
	s, err := q.JetStream().Stream(ctx, tasks.StreamName)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	return &Schedules{q: q, stream: s}, nil
}

// Validate checks s; the error is a *FieldError naming the field.
func (s *Schedule) Validate() error {
	if err := transport.ValidateName(s.Name); err != nil {
		return &FieldError{"name", err.Error()}
	}
	if err := transport.ValidateName(s.Service); err != nil {
		return &FieldError{"service", err.Error()}
	}
	if err := transport.ValidateName(s.Function); err != nil {
		return &FieldError{"function", err.Error()}
	}
	if _, err := parseSpec(s.Spec, s.TimeZone); err != nil {
		return err
	}
	switch s.Overlap {
	case "", "allow", "skip":
	default:
		return &FieldError{"overlap", fmt.Sprintf("%q: want allow or skip", s.Overlap)}
	}
	if len(s.Claims) > 0 {
		if _, err := transport.DecodeClaims(string(s.Claims)); err != nil {
			return &FieldError{"claims", "want a JSON object"}
		}
	}
	if len(s.Params) > 0 && !json.Valid(s.Params) {
		return &FieldError{"params", "not valid JSON"}
	}
	return nil
}

// Put creates the schedule s, or replaces the one of the same name: from
// then on only the new spec fires.
func (sc *Schedules) Put(ctx context.Context, s Schedule) error {
	if err := s.Validate(); err != nil {
		return err
	}
	msg, err := sc.q.ScheduleMessage(ctx, tasks.ScheduledCall{
		Call: tasks.Call{Service: s.Service, Function: s.Function, Params: s.Params,
			ContentType: "", Retry: s.Retry},
		Claims:   compactClaims(s.Claims),
		Name:     s.Name,
		Overlap:  s.Overlap,
		SignedTo: time.Now().Add(signedFor),
	})
	if err != nil {
		return err
	}
	msg.Subject = subjectPrefix + s.Name
	msg.Header.Set("Nats-Schedule", normalizeSpec(s.Spec))
	if s.TimeZone != "" {
		msg.Header.Set("Nats-Schedule-Time-Zone", s.TimeZone)
	}
	spec, _ := json.Marshal(s)
	msg.Header.Set("Fm-Schedule-Def", string(spec))
	if _, err := sc.q.JetStream().PublishMsg(ctx, msg, jetstream.WithExpectStream(tasks.StreamName)); err != nil {
		return fmt.Errorf("schedules: storing %q: %w", s.Name, err)
	}
	return nil
}

func compactClaims(c json.RawMessage) string {
	if len(c) == 0 {
		return ""
	}
	var b bytes.Buffer
	_ = json.Compact(&b, c)
	return b.String()
}

// normalizeSpec writes a spec as JetStream reads it.
func normalizeSpec(s string) string {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutPrefix(s, "@every "); ok {
		dur, _ := time.ParseDuration(strings.TrimSpace(d))
		return "@every " + dur.String()
	}
	return strings.Join(strings.Fields(s), " ")
}

// Delete removes the schedule name; it never fires again. Deleting a
// schedule that does not exist is not an error.
func (sc *Schedules) Delete(ctx context.Context, name string) error {
	if err := transport.ValidateName(name); err != nil {
		return &FieldError{"name", err.Error()}
	}
	if err := sc.stream.Purge(ctx, jetstream.WithPurgeSubject(subjectPrefix+name)); err != nil {
		return fmt.Errorf("schedules: deleting %q: %w", name, err)
	}
	return nil
}

// List returns the schedules, by name, with their next fire time and the
// status of their last tick.
func (sc *Schedules) List(ctx context.Context) ([]Info, error) {
	out, _, err := sc.ListFirst(ctx, -1)
	return out, err
}

// ListFirst is [Schedules.List] for at most the first n schedules by name
// (all of them for n < 0): it reads only those, one request each, and
// reports whether there are more.
func (sc *Schedules) ListFirst(ctx context.Context, n int) ([]Info, bool, error) {
	info, err := sc.stream.Info(ctx, jetstream.WithSubjectFilter(subjectPrefix+">"))
	if err != nil {
		return nil, false, fmt.Errorf("schedules: listing: %w", err)
	}
	subjects := slices.Sorted(maps.Keys(info.State.Subjects))
	more := n >= 0 && len(subjects) > n
	if more {
		subjects = subjects[:n]
	}
	var out []Info
	for _, subj := range subjects {
		m, err := sc.stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("schedules: listing: %w", err)
		}
		var s Schedule
		if json.Unmarshal([]byte(m.Header.Get("Fm-Schedule-Def")), &s) != nil {
			continue
		}
		in := Info{Schedule: s}
		if sp, err := parseSpec(s.Spec, s.TimeZone); err == nil {
			in.Next = sp.next(time.Now())
		}
		in.Last = sc.q.LastTick(ctx, s.Name)
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, more, nil
}

// File is the configuration file form: {"schedules": [...]}.
type File struct {
	Schedules []Schedule `json:"schedules"`
}

// ParseFile reads a schedules file, checking every schedule; an error
// names the schedule and the field.
func ParseFile(data []byte) ([]Schedule, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("schedules: file: %w", err)
	}
	seen := map[string]bool{}
	for i, s := range f.Schedules {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("schedules: file: schedule %d (%q): %w", i, s.Name, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("schedules: file: schedule %q listed twice", s.Name)
		}
		seen[s.Name] = true
	}
	return f.Schedules, nil
}

// LoadFile reads the schedules file at path and makes the stored
// schedules what it says: each is put (created or replaced), and a stored
// schedule the file does not list is deleted.
func (sc *Schedules) LoadFile(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("schedules: %w", err)
	}
	list, err := ParseFile(data)
	if err != nil {
		return err
	}
	return sc.Sync(ctx, list)
}

// Sync makes the stored schedules exactly list.
func (sc *Schedules) Sync(ctx context.Context, list []Schedule) error {
	keep := map[string]bool{}
	for _, s := range list {
		if err := sc.Put(ctx, s); err != nil {
			return err
		}
		keep[s.Name] = true
	}
	stored, err := sc.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range stored {
		if !keep[in.Name] {
			if err := sc.Delete(ctx, in.Name); err != nil {
				return err
			}
		}
	}
	return nil
}
