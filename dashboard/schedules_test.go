package dashboard_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/dashboard"
	"github.com/funcmesh/funcmesh/schedules"
	"github.com/funcmesh/funcmesh/tasks"
	"github.com/funcmesh/funcmesh/transport"
)

// TestSchedules: a schedule on a real JetStream broker shows with its next
// fire time and, after a tick, its outcome, on the page and in the JSON;
// never its params or claims.
func TestSchedules(t *testing.T) {
	t.Parallel()
	b, q, fixed := newTasksMesh(t)
	fixed.Store(true)
	sc, err := schedules.New(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.New(b.Conn(), dashboard.Options{Schedules: sc, MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := dash.Snapshot(t.Context()); err != nil || s.Schedules == nil || len(s.Schedules.List) != 0 || s.Schedules.Error != "" {
		t.Fatalf("no schedule yet: %+v, %v; want an empty list", s, err)
	}
	err = sc.Put(t.Context(), schedules.Schedule{Name: "nightly-ship", Spec: "@every 1s", Service: "orders", Function: "ship",
		Params: json.RawMessage(`{"Order":7,"Note":"params-secret"}`), Claims: json.RawMessage(`{"sub":"claims-secret"}`), Overlap: "skip"})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	s := poll(t, dash, func(s *dashboard.Snapshot) bool {
		return s.Schedules != nil && len(s.Schedules.List) == 1 && s.Schedules.List[0].Last != nil &&
			s.Schedules.List[0].Last.State == tasks.StateSucceeded
	})
	got := s.Schedules.List[0]
	if got.Name != "nightly-ship" || got.Spec != "@every 1s" || got.Service != "orders" || got.Function != "ship" || got.Overlap != "skip" {
		t.Errorf("schedule: %+v", got)
	}
	if !got.Next.After(s.At.Add(-time.Millisecond)) || got.Next.After(s.At.Add(2*time.Second)) {
		t.Errorf("next fire %v; want within a second after the snapshot at %v", got.Next, s.At)
	}
	if got.Last.At.Before(before.Add(-time.Second)) || got.Last.ID == "" {
		t.Errorf("last tick: %+v; want one after %v", got.Last, before)
	}

	srv := httptest.NewServer(dash)
	t.Cleanup(srv.Close)
	get := func(query string) string {
		res, err := http.Get(srv.URL + "/" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", query, res.StatusCode, body)
		}
		return string(body)
	}
	js := get("?format=json")
	var snap dashboard.Snapshot
	if err := json.Unmarshal([]byte(js), &snap); err != nil || snap.Schedules == nil || len(snap.Schedules.List) != 1 ||
		snap.Schedules.List[0].Next.IsZero() || snap.Schedules.List[0].Last == nil {
		t.Errorf("JSON: %v\n%s", err, js)
	}
	page := get("")
	for _, want := range []string{`id="schedules"`, `data-schedule="nightly-ship"`, `<code>@every 1s</code>`, `orders.ship`, `overlap skip`, `>succeeded<`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	for _, body := range []string{js, page} {
		if strings.Contains(body, "secret") {
			t.Errorf("the dashboard shows a schedule's params or claims:\n%s", body)
		}
	}
}

// TestSchedulesError: when the schedules cannot be read, the section says
// why and the rest of the page still shows.
func TestSchedulesError(t *testing.T) {
	t.Parallel()
	b, _, _ := newTasksMesh(t)
	nc, err := b.NewConn("other-host")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := transport.NewClaimsSigner(transport.ClaimsKey{ID: "k1", Secret: []byte("the-host-claims-key-at-least-32-bytes")})
	if err != nil {
		t.Fatal(err)
	}
	q, err := tasks.New(t.Context(), nc, tasks.Options{Signer: signer, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := schedules.New(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close() // its connection is gone: List fails
	dash, err := dashboard.New(b.Conn(), dashboard.Options{Schedules: sc})
	if err != nil {
		t.Fatal(err)
	}
	s, err := dash.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Schedules == nil || s.Schedules.Error == "" || len(s.Schedules.List) != 0 {
		t.Fatalf("schedules: %+v; want an error and no list", s.Schedules)
	}
	if len(s.Services) != 1 || s.Services[0].Name != "orders" {
		t.Errorf("services: %+v; want orders still shown", s.Services)
	}
}

// TestSchedulesBounded: with more schedules than Options.MaxSchedules,
// the dashboard shows the first by name and says there are more.
func TestSchedulesBounded(t *testing.T) {
	t.Parallel()
	b, q, _ := newTasksMesh(t)
	sc, err := schedules.New(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		err := sc.Put(t.Context(), schedules.Schedule{Name: fmt.Sprintf("s%02d", 11-i), Spec: "@every 1h", Service: "orders", Function: "ship"})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		max   int
		names []string
		more  bool
	}{
		{5, []string{"s00", "s01", "s02", "s03", "s04"}, true},
		{12, nil, false},
	} {
		dash, err := dashboard.New(b.Conn(), dashboard.Options{Schedules: sc, MaxSchedules: tc.max})
		if err != nil {
			t.Fatal(err)
		}
		s, err := dash.Snapshot(t.Context())
		if err != nil || s.Schedules == nil || s.Schedules.Error != "" {
			t.Fatalf("max %d: %+v, %v", tc.max, s, err)
		}
		var names []string
		for _, sch := range s.Schedules.List {
			names = append(names, sch.Name)
		}
		if want := tc.names; want == nil && len(names) != 12 || want != nil && !slices.Equal(names, want) || s.Schedules.More != tc.more {
			t.Errorf("max %d: listed %v, more %v; want %v (12 when nil), more %v", tc.max, names, s.Schedules.More, tc.names, tc.more)
		}
	}
}
