package reliability_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/funcmesh/funcmesh/broker"
	"github.com/funcmesh/funcmesh/mesh"
)

// TestDiscoverySpoofing: a rogue holding alpha's credentials answers the
// generic $SRV.INFO request with made-up services: payments (which does
// not run) with refund_all, bravo (which runs in its own process) with a
// function it does not have, and alpha with a function under bravo's
// subjects. The listing shows only what each service says on its own
// $SRV.INFO.<name> subject: alpha may be listed (its credentials answer
// there) but with no function under another service's subjects.
func TestDiscoverySpoofing(t *testing.T) {
	t.Parallel()
	b := startBroker(t, broker.WithServiceAuth(broker.ServiceAuth{}))
	bravo, _ := b.ServiceCredentials("bravo")
	startEcho(t, withCreds(t, b.ClientURL(), bravo), "bravo")
	alpha, _ := b.ServiceCredentials("alpha")
	for _, fake := range []micro.Info{
		{ServiceIdentity: micro.ServiceIdentity{Name: "payments", ID: "FAKE1", Version: "6.6.6", Metadata: map[string]string{mesh.MetadataPrefix: "fn"}},
			Type: micro.InfoResponseType, Endpoints: []micro.EndpointInfo{{Name: "refund_all", Subject: "fn.payments.refund_all"}}},
		{ServiceIdentity: micro.ServiceIdentity{Name: "bravo", ID: "FAKE2", Version: "6.6.6", Metadata: map[string]string{mesh.MetadataPrefix: "fn"}},
			Type: micro.InfoResponseType, Endpoints: []micro.EndpointInfo{{Name: "steal", Subject: "fn.bravo.steal"}}},
		{ServiceIdentity: micro.ServiceIdentity{Name: "alpha", ID: "FAKE3", Version: "6.6.6", Metadata: map[string]string{mesh.MetadataPrefix: "fn"}},
			Type: micro.InfoResponseType, Endpoints: []micro.EndpointInfo{{Name: "steal", Subject: "fn.bravo.steal"}}},
	} {
		// One connection per fake: the server lets each answer a
		// request once.
		nc, err := nats.Connect(b.ClientURL(), alpha.Option())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		data, _ := json.Marshal(fake)
		for _, subj := range []string{"$SRV.INFO", "$SRV.INFO.alpha"} {
			if _, err := nc.Subscribe(subj, func(m *nats.Msg) { _ = m.Respond(data) }); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	d, err := mesh.NewDiscovery(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	list, err := d.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, s := range list {
		names = append(names, s.Name)
		if s.Name == "alpha" && len(s.Functions) == 0 {
			continue
		}
		if s.Name != "bravo" {
			t.Errorf("the listing has %s %v; want bravo, and alpha without functions", s.Name, s.Functions)
			continue
		}
		if slices.Contains(s.Functions, "steal") || len(s.Instances) != 1 || !slices.Contains(s.Functions, "echo") {
			t.Errorf("bravo is listed with %v, %d instances; want its own functions and instance", s.Functions, len(s.Instances))
		}
	}
	if !slices.Contains(names, "bravo") || slices.Contains(names, "payments") {
		t.Errorf("the listing has %v; want bravo and no payments", names)
	}
}
