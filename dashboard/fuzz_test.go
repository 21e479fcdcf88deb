package dashboard

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/mesh"
	"github.com/funcmesh/funcmesh/tasks"
)

// FuzzStats feeds $SRV.STATS answers, which any client on the bus may
// send, through the snapshot and the page: nothing may panic, and nothing
// in them may become markup or script in the operator's browser.
func FuzzStats(f *testing.F) {
	f.Add([]byte(`{"type":"io.nats.micro.v1.stats_response","name":"svc","id":"i1","version":"1.0.0","started":"2026-01-02T03:04:05Z",
		"endpoints":[{"name":"a","subject":"fn.svc.a","num_requests":3,"num_errors":1,"last_error":"500:<b>x</b>","processing_time":3000000},
		{"name":"b","subject":"fn.svc.b","data":{"calls":5,"errors":2,"rejected":1,"panics":1,"in_flight":2}}]}`))
	f.Add([]byte(`{"type":"io.nats.micro.v1.stats_response","name":"svc","id":"i1","endpoints":[null,{"subject":"fn.svc.</script><script>alert(1)</script>","num_requests":-1,"processing_time":-5}]}`))
	f.Add([]byte(`{"type":"io.nats.micro.v1.stats_response","name":"svc","id":"i1","endpoints":[{"subject":"fn.svc.x","data":{"calls":"many"}},{"subject":"fn.svc.y","data":[1]},{"subject":"fn.svc.z","num_requests":9223372036854775807,"processing_time":9223372036854775807}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st micro.Stats
		if json.Unmarshal(data, &st) != nil {
			return
		}
		services := []mesh.ServiceInfo{{
			Name:      "svc",
			Functions: []string{"a"},
			Instances: []mesh.InstanceInfo{{ID: st.ID, Version: st.Version, Functions: []string{"a"}}},
		}}
		snap := build("fn", services, map[string]*micro.Stats{st.ID: &st}, time.Unix(1e9, 0))
		// A dead letter's error is a function's text too.
		dl := tasks.DeadLetter{ID: st.ID, Service: st.Name, Function: "f", Failed: st.Started}
		for _, ep := range st.Endpoints {
			if ep != nil {
				dl.Error.Message = ep.LastError
			}
		}
		snap.DeadLetters = &DeadLetters{List: []tasks.DeadLetter{dl}}
		if _, err := json.Marshal(snap); err != nil {
			t.Fatalf("the snapshot does not encode: %v", err)
		}
		var page bytes.Buffer
		err := pageTemplate.ExecuteTemplate(&page, "page", pageData{Title: "t", Nonce: "n", RefreshMs: 1000, Snap: snap, Now: time.Unix(1e9, 0)})
		if err != nil {
			t.Fatalf("rendering: %v", err)
		}
		html := page.String()
		if n := strings.Count(strings.ToLower(html), "<script"); n != 1 {
			t.Fatalf("%d script tags in the page; want only its own:\n%s", n, html)
		}
		for _, bad := range []string{"<b>", "<img", " onerror=", "<iframe"} {
			if strings.Contains(strings.ToLower(html), bad) {
				t.Fatalf("%q from a stats answer reached the page as markup", bad)
			}
		}
	})
}
