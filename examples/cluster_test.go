package examples_test

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCluster(t *testing.T) {
	t.Parallel()
	p := startProc(t, "", nil, binary(t, "cluster"))
	if err := p.wait(t, 60*time.Second); err != nil {
		t.Fatalf("cluster: %v; want exit 0", err)
	}
	out := strings.Join(p.output(), "\n")
	for _, want := range []string{
		"cluster formed: every node has a route to the other two",
		"node B stopped; A and C are still routed to each other",
		"ok: every call was answered after node B stopped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	ok := regexp.MustCompile(`(?m)^call \d \((before|after) B stopped\): 200 \{"greeting":"Hello, \d!","served_on":"node A"\}$`)
	if n := len(ok.FindAllString(out, -1)); n != 6 {
		t.Errorf("%d successful calls printed; want 6:\n%s", n, out)
	}
}
