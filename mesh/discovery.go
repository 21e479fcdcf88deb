package mesh

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/transport"
)

// MetadataPrefix is the micro metadata key in which a [Service] states
// its subject prefix, so that discovery recognizes an instance that has no
// function registered yet.
const MetadataPrefix = "funcmesh.prefix"

// maxProbes bounds the per-service answers a Discovery keeps.
const maxProbes = 1024

// Discovery finds the services that run on the bus, their instances and
// their functions, through the micro protocol's $SRV.INFO requests. An
// instance counts when it states the discovery's prefix in its metadata
// ([MetadataPrefix]) or has an endpoint on a subject under it, so services
// written in other languages are found too.
//
// A Discovery is also an http.Handler that serves the cached listing as
// JSON (see [Discovery.ServeHTTP]); the host mounts it where it wants, or
// not at all. It is safe for concurrent use.
type Discovery struct {
	nc  *nats.Conn
	cfg discoveryConfig

	listMu   sync.Mutex // held while listing, so one refresh runs at a time
	listing  []ServiceInfo
	listedAt time.Time

	probeMu sync.Mutex
	probes  map[string]*probe
}

type probe struct {
	done    chan struct{}
	running bool
	err     error
	at      time.Time
}

// ServiceInfo describes one running service.
type ServiceInfo struct {
	Name string `json:"name"`
	// Functions is every function some instance serves, sorted.
	Functions []string `json:"functions"`
	// Instances lists the running instances, sorted by ID.
	Instances []InstanceInfo `json:"instances"`
}

// InstanceInfo describes one instance of a service.
type InstanceInfo struct {
	ID          string            `json:"id"`
	Version     string            `json:"version"`
	Description string            `json:"description,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Functions   []string          `json:"functions"`
}

// NewDiscovery returns a discovery of the services on nc.
func NewDiscovery(nc *nats.Conn, opts ...ClientOption) (*Discovery, error) {
	if nc == nil {
		return nil, errors.New("mesh: NewDiscovery: nil connection")
	}
	cfg := discoveryConfig{
		prefix:       transport.DefaultPrefix,
		window:       250 * time.Millisecond,
		refresh:      2 * time.Second,
		probeTimeout: time.Second,
	}
	apply(clientSide(opts), &cfg, cfg.fail, func(o *option) func(*discoveryConfig) { return o.discovery }, "Discovery")
	if cfg.err != nil {
		return nil, cfg.err
	}
	return &Discovery{nc: nc, cfg: cfg, probes: make(map[string]*probe)}, nil
}

// Services asks every service instance on the bus for its info and
// returns the services found, sorted by name.
//
// It lists only what each service says about itself: the generic
// $SRV.INFO request, which any client allowed to answer discovery can
// answer with made-up entries, only names the candidates; each is then
// asked on its own subject, $SRV.INFO.<name>, which with per-service
// credentials only that service (and the host) may subscribe to, and only
// answers that name that service, with functions under its own subjects,
// are listed. Each round collects replies for the discovery window
// ([WithDiscoveryWindow]) or until ctx ends, whichever comes first; the
// second ends early once every instance heard in the first has answered.
func (d *Discovery) Services(ctx context.Context) ([]ServiceInfo, error) {
	wctx, cancel := context.WithTimeout(ctx, d.cfg.window)
	expected := map[string]map[string]bool{} // name → instance IDs heard
	err := d.collect(wctx, micro.InfoVerb, "", func(info *micro.Info) bool {
		if transport.ValidateName(info.Name) == nil && len(expected) < maxProbes {
			if expected[info.Name] == nil {
				expected[info.Name] = map[string]bool{}
			}
			expected[info.Name][info.ID] = true
		}
		return true
	})
	cancel()
	if err != nil {
		return nil, err
	}

	var (
		mu     sync.Mutex
		byName = map[string]*ServiceInfo{}
		errs   []error
		wg     sync.WaitGroup
	)
	wctx, cancel = context.WithTimeout(ctx, d.cfg.window)
	defer cancel()
	for name, ids := range expected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var insts []InstanceInfo
			seen := map[string]bool{}
			err := d.collect(wctx, micro.InfoVerb, name, func(info *micro.Info) bool {
				if info.Name != name || seen[info.ID] {
					return true
				}
				if inst, ok := d.instance(info); ok {
					seen[info.ID] = true
					insts = append(insts, inst)
				}
				for id := range ids {
					if !seen[id] {
						return true
					}
				}
				return false // every instance heard before has answered
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if len(insts) == 0 {
				return
			}
			s := &ServiceInfo{Name: name, Functions: []string{}, Instances: insts}
			for _, inst := range insts {
				for _, f := range inst.Functions {
					if !slices.Contains(s.Functions, f) {
						s.Functions = append(s.Functions, f)
					}
				}
			}
			byName[name] = s
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]ServiceInfo, 0, len(byName))
	for _, s := range byName {
		slices.Sort(s.Functions)
		slices.SortFunc(s.Instances, func(a, b InstanceInfo) int { return cmp.Compare(a.ID, b.ID) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ServiceInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Cached returns the listing of [Discovery.Services], asking the bus again
// only when the last listing is older than the refresh interval
// ([WithRefreshInterval]).
func (d *Discovery) Cached(ctx context.Context) ([]ServiceInfo, error) {
	d.listMu.Lock()
	defer d.listMu.Unlock()
	if d.listing != nil && time.Since(d.listedAt) < d.cfg.refresh {
		return d.listing, nil
	}
	l, err := d.Services(ctx)
	if err != nil {
		return nil, err
	}
	d.listing, d.listedAt = l, time.Now()
	return l, nil
}

// Running reports whether an instance of service runs. It asks the
// service's instances ($SRV.INFO.<service>) and takes the first that
// answers under the discovery's prefix, waiting at most the probe timeout
// ([WithProbeTimeout]); no instance at all is known at once. Concurrent
// askers share one probe, and a "no" is reused for the refresh interval,
// so a burst of calls to a stopped service costs one round trip. A "yes"
// is not reused: a service that stopped since must not pass for one that
// runs without the function asked for.
func (d *Discovery) Running(ctx context.Context, service string) (bool, error) {
	if err := transport.ValidateName(service); err != nil {
		return false, fmt.Errorf("mesh: service name: %w", err)
	}
	d.probeMu.Lock()
	if p := d.probes[service]; p != nil {
		select {
		case <-p.done:
			if !p.running && time.Since(p.at) < d.cfg.refresh {
				d.probeMu.Unlock()
				return false, nil
			}
		default:
			d.probeMu.Unlock()
			select {
			case <-p.done:
				return p.running, p.err
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
	}
	if len(d.probes) >= maxProbes {
		for name, p := range d.probes {
			select {
			case <-p.done:
				delete(d.probes, name)
			default:
			}
		}
	}
	p := &probe{done: make(chan struct{})}
	d.probes[service] = p
	d.probeMu.Unlock()

	// The probe's answer is shared and cached, so it must not depend on
	// whether this caller gives up.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.probeTimeout)
	defer cancel()
	err := d.collect(pctx, micro.InfoVerb, service, func(info *micro.Info) bool {
		if _, ok := d.instance(info); ok && info.Name == service {
			p.running = true
			return false
		}
		return true
	})

	d.probeMu.Lock()
	p.err, p.at = err, time.Now()
	if err != nil && d.probes[service] == p {
		delete(d.probes, service) // do not keep a failed probe
	}
	close(p.done)
	d.probeMu.Unlock()
	return p.running, err
}

// collect sends a $SRV request for verb (to every service, or to the one
// named) and hands each info reply to f until f returns false, ctx ends
// or no service is there at all. Running out of time is not an error.
func (d *Discovery) collect(ctx context.Context, verb micro.Verb, service string, f func(*micro.Info) bool) error {
	subject, err := micro.ControlSubject(verb, service, "")
	if err != nil {
		return err
	}
	inbox := d.nc.NewRespInbox()
	sub, err := d.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("mesh: discovery: %w", err)
	}
	defer sub.Unsubscribe()
	if err := d.nc.PublishRequest(subject, inbox, nil); err != nil {
		return fmt.Errorf("mesh: discovery: %w", err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, nats.ErrNoResponders) {
				return nil // out of time, or nobody is there at all
			}
			return fmt.Errorf("mesh: discovery: %w", err)
		}
		var info micro.Info
		if json.Unmarshal(m.Data, &info) != nil || info.Type != micro.InfoResponseType {
			continue
		}
		if !f(&info) {
			return nil
		}
	}
}

// instance returns what info says about a mesh service instance, and false
// when it is not one under the discovery's prefix.
func (d *Discovery) instance(info *micro.Info) (InstanceInfo, bool) {
	if transport.ValidateName(info.Name) != nil {
		return InstanceInfo{}, false
	}
	inst := InstanceInfo{
		ID:          info.ID,
		Version:     info.Version,
		Description: info.Description,
		Metadata:    info.Metadata,
		Functions:   []string{},
	}
	ok := info.Metadata[MetadataPrefix] == d.cfg.prefix
	for _, ep := range info.Endpoints {
		svc, fn, under := transport.SplitSubject(d.cfg.prefix, ep.Subject)
		if under && svc == info.Name {
			ok = true
			inst.Functions = append(inst.Functions, fn)
		}
	}
	slices.Sort(inst.Functions)
	return inst, ok
}

// ServeHTTP answers GET and HEAD with the cached listing as JSON:
//
//	{"services": [{"name": "payments", "functions": ["charge"],
//	  "instances": [{"id": "...", "version": "1.2.0", "functions": ["charge"]}]}]}
//
// and other methods with 405. The listing is refreshed at most once per
// refresh interval however often it is asked for.
func (d *Discovery) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		transport.WriteHTTPError(w, transport.ErrorWithStatus(http.StatusMethodNotAllowed, "method not allowed"))
		return
	}
	l, err := d.Cached(r.Context())
	if err != nil {
		transport.WriteHTTPError(w, transport.WrapError(transport.CodeUnavailable, "discovery failed", err))
		return
	}
	b, err := json.Marshal(struct {
		Services []ServiceInfo `json:"services"`
	}{l})
	if err != nil {
		transport.WriteHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(append(b, '\n'))
}
