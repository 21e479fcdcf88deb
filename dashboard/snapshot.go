package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// Snapshot is what the dashboard shows: the services on the bus at one
// moment, as their instances describe themselves ($SRV.INFO) and count
// their calls ($SRV.STATS).
type Snapshot struct {
	At       time.Time `json:"at"`
	Services []Service `json:"services"`
	// DeadLetters is set when the dashboard has Options.Tasks.
	DeadLetters *DeadLetters `json:"dead_letters,omitempty"`
	// Schedules is set when the dashboard has Options.Schedules.
	Schedules *Schedules `json:"schedules,omitempty"`
}

// Schedules are the periodic calls, by name.
type Schedules struct {
	List []Schedule `json:"list"`
	// More is true when there are more than the list holds (see
	// Options.MaxSchedules).
	More bool `json:"more,omitempty"`
	// Error says why they could not be read.
	Error string `json:"error,omitempty"`
}

// Schedule is one periodic call as the dashboard shows it: what
// [schedules.Info] holds but its params and claims.
type Schedule struct {
	Name     string `json:"name"`
	Spec     string `json:"spec"`
	TimeZone string `json:"time_zone,omitempty"`
	Service  string `json:"service"`
	Function string `json:"function"`
	Overlap  string `json:"overlap,omitempty"`
	// Next is when it fires next; zero when its spec is not understood.
	Next time.Time `json:"next,omitzero"`
	// Last is how its last tick went; nil before the first.
	Last *Tick `json:"last,omitempty"`
}

// Tick is the outcome of a schedule's last tick.
type Tick struct {
	ID    string      `json:"id"`
	State tasks.State `json:"state"`
	// At is when the tick's state last changed.
	At time.Time `json:"at"`
	// Error is its last attempt's error, if any.
	Error *tasks.StatusError `json:"error,omitempty"`
}

// schedule is what the dashboard shows of in.
func schedule(in schedules.Info) Schedule {
	s := Schedule{Name: in.Name, Spec: in.Spec, TimeZone: in.TimeZone, Service: in.Service,
		Function: in.Function, Overlap: in.Overlap, Next: in.Next}
	if l := in.Last; l != nil {
		s.Last = &Tick{ID: l.ID, State: l.State, At: l.Updated, Error: l.Error}
	}
	return s
}

// DeadLetters are the durable calls that failed for good, oldest first.
type DeadLetters struct {
	List []tasks.DeadLetter `json:"list"`
	// More is true when there are more than the list holds.
	More bool `json:"more,omitempty"`
	// Error says why they could not be read.
	Error string `json:"error,omitempty"`
}

// Service is one service and its instances.
type Service struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
	// Functions sums the counts of every instance, by function, sorted by
	// name.
	Functions []Function `json:"functions"`
}

// Instance is one running instance of a service.
type Instance struct {
	ID          string `json:"id"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	// Started is when the instance started; zero when it did not answer
	// the stats request in time.
	Started time.Time `json:"started,omitzero"`
	// InFlight is the calls the instance runs now (funcmesh services
	// only).
	InFlight int64 `json:"in_flight"`
}

// Function is one function's counts over every instance that serves it.
type Function struct {
	Name string `json:"name"`
	// Calls is the calls the function ran for, Errors those answered with
	// an error, Rejected those refused at an instance's concurrency limit
	// and Panics those whose function panicked (the last two from funcmesh
	// services only).
	Calls    int64 `json:"calls"`
	Errors   int64 `json:"errors"`
	Rejected int64 `json:"rejected"`
	Panics   int64 `json:"panics"`
	// AvgLatency is the average time a call took, over the instances that
	// measure it; LatencyKnown is false when none does (see the package
	// documentation).
	AvgLatency   time.Duration `json:"avg_latency"`
	LatencyKnown bool          `json:"latency_known"`
	// LastError is the last error message an instance reported.
	LastError string `json:"last_error,omitempty"`
}

// collect asks the bus for the services, then for their instances'
// stats, waiting at most window for each.
func (h *Handler) collect(ctx context.Context) (*Snapshot, error) {
	services, err := h.disc.Services(ctx)
	if err != nil {
		return nil, err
	}
	stats, err := h.stats(ctx, services)
	if err != nil {
		return nil, err
	}
	return build(h.prefix, services, stats, time.Now()), nil
}

// build puts the instances' info and stats answers together. Every field
// of those answers comes from outside: it is counted, copied or skipped,
// never trusted to be well-formed.
func build(prefix string, services []mesh.ServiceInfo, stats map[string]*micro.Stats, at time.Time) *Snapshot {
	snap := &Snapshot{At: at, Services: make([]Service, 0, len(services))}
	for _, si := range services {
		s := Service{Name: si.Name, Instances: make([]Instance, 0, len(si.Instances))}
		funcs := map[string]*Function{}
		latency := map[string]*timeSum{}
		for _, f := range si.Functions {
			funcs[f] = &Function{Name: f}
		}
		for _, ii := range si.Instances {
			inst := Instance{ID: ii.ID, Version: ii.Version, Description: ii.Description}
			st := stats[ii.ID]
			if st != nil && st.Name == si.Name {
				inst.Started = st.Started
				for _, ep := range st.Endpoints {
					if ep == nil {
						continue
					}
					svc, fn, ok := transport.SplitSubject(prefix, ep.Subject)
					if !ok || svc != si.Name {
						continue
					}
					f := funcs[fn]
					if f == nil {
						f = &Function{Name: fn}
						funcs[fn] = f
					}
					if ep.LastError != "" {
						f.LastError = ep.LastError
					}
					var d mesh.EndpointStats
					l := latency[fn]
					if l == nil {
						l = &timeSum{}
						latency[fn] = l
					}
					if meshData(ep.Data, &d) {
						// A funcmesh service runs each call in a goroutine
						// of its own, so micro's counters see only the
						// hand-off; its own data has the real counts and
						// processing time.
						f.Calls += d.Calls
						f.Errors += d.Errors
						f.Rejected += d.Rejected
						f.Panics += d.Panics
						inst.InFlight = d.InFlight
						l.total += d.ProcessingTime
						l.n += d.Calls
						continue
					}
					f.Calls += int64(ep.NumRequests)
					f.Errors += int64(ep.NumErrors)
					l.total += ep.ProcessingTime
					l.n += int64(ep.NumRequests)
				}
			}
			s.Instances = append(s.Instances, inst)
		}
		for name, l := range latency {
			if l.n > 0 {
				funcs[name].AvgLatency = l.total / time.Duration(l.n)
				funcs[name].LatencyKnown = true
			}
		}
		for _, f := range funcs {
			s.Functions = append(s.Functions, *f)
		}
		slices.SortFunc(s.Functions, func(a, b Function) int { return cmp.Compare(a.Name, b.Name) })
		snap.Services = append(snap.Services, s)
	}
	return snap
}

// timeSum adds up the processing time of a function's calls.
type timeSum struct {
	total time.Duration
	n     int64
}

// meshData decodes the data a funcmesh service attaches to an endpoint's
// stats; false when there is none (a service of another kind).
func meshData(raw json.RawMessage, d *mesh.EndpointStats) bool {
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(raw, &probe) != nil {
		return false
	}
	if _, ok := probe["calls"]; !ok {
		return false
	}
	return json.Unmarshal(raw, d) == nil
}

// stats asks each service for its instances' stats on the service's own
// subject, $SRV.STATS.<name>, which with per-service credentials only
// that service (and the host) may subscribe to, and collects the answers
// by instance ID until every instance discovery found has answered, ctx
// ends or h.window passes. An answer counts only when it names the
// service asked and an instance of it: no service can report the stats
// of another (the generic $SRV.STATS, which any service may answer,
// would let it).
func (h *Handler) stats(ctx context.Context, services []mesh.ServiceInfo) (map[string]*micro.Stats, error) {
	out := map[string]*micro.Stats{}
	if len(services) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.window)
	defer cancel()
	// Each service is asked with its own reply subject, <inbox>.<i>, so
	// that an answer tells which service it answers for.
	inbox := h.nc.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, fmt.Errorf("dashboard: stats: %w", err)
	}
	defer sub.Unsubscribe()
	waiting := 0
	for i, si := range services {
		subject, err := micro.ControlSubject(micro.StatsVerb, si.Name, "")
		if err != nil {
			continue // discovery lists only valid names
		}
		if err := h.nc.PublishRequest(subject, inbox+"."+strconv.Itoa(i), nil); err != nil {
			return nil, fmt.Errorf("dashboard: stats: %w", err)
		}
		waiting += len(si.Instances)
	}
	for waiting > 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return out, nil // out of time
			}
			return nil, fmt.Errorf("dashboard: stats: %w", err)
		}
		i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= len(services) {
			continue
		}
		var st micro.Stats
		if json.Unmarshal(m.Data, &st) != nil || st.Type != micro.StatsResponseType || st.Name != services[i].Name {
			continue
		}
		if out[st.ID] == nil && slices.ContainsFunc(services[i].Instances, func(ii mesh.InstanceInfo) bool { return ii.ID == st.ID }) {
			out[st.ID] = &st
			waiting--
		}
	}
	return out, nil
}
