package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
)

// runProbe starts a small probe over site ams and waits until it completes.
func (r *rig) runProbe() api.Probe {
	r.t.Helper()
	p, err := r.admin.StartProbe(r.ctx, api.ProbeStart{Selector: "site=ams", Bytes: 256 << 10, Duration: api.Duration(5 * time.Second)})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(r.ctx, 60*time.Second)
	defer cancel()
	if _, err := r.admin.WaitEvent(ctx, p.Event, func(e api.Event) bool {
		return e.Type == api.EventProbeCompleted && e.Subject == api.ProbeSubject(p.ID)
	}); err != nil {
		r.t.Fatalf("probe %d did not complete: %v", p.ID, err)
	}
	got, err := r.admin.Probe(r.ctx, p.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	return got
}

// Three real agents measure each other on loopback: the stored matrix has every directed pair
// with positive throughput and round trips. With one agent down, its pairs fail with that
// error, the others are measured, and the probe completes.
func TestMeshProbe(t *testing.T) {
	r := startRig(t, false, 200*time.Millisecond)
	nodes := map[string]*node{}
	for _, name := range []string{"n1", "n2", "n3"} {
		nodes[name] = r.start(name, t.TempDir(), agent.Config{})
	}
	p := r.runProbe()
	if p.State != api.ProbeStateCompleted || p.Links != 3 || p.Done != 3 || p.Failed != 0 || len(p.Pairs) != 6 ||
		strings.Join(p.Nodes, ",") != "n1,n2,n3" {
		t.Fatalf("probe %+v", p)
	}
	seen := map[[2]string]bool{}
	for _, pr := range p.Pairs {
		seen[[2]string{pr.From, pr.To}] = true
		if pr.State != api.LinkDone || pr.Error != "" || pr.Mbps <= 0 || pr.RTTms.Min <= 0 || pr.RTTms.Min > pr.RTTms.Avg || pr.RTTms.Avg > pr.RTTms.Max {
			t.Errorf("pair %+v", pr)
		}
	}
	if len(seen) != 6 || seen[[2]string{"n1", "n1"}] {
		t.Fatalf("pairs %v", seen)
	}
	list, err := r.admin.Probes(r.ctx)
	if err != nil || len(list) != 1 || list[0].ID != p.ID || list[0].Done != 3 || list[0].Pairs != nil {
		t.Fatalf("list %+v, %v", list, err)
	}

	// n3's agent stops: once the server marks it down, its pairs fail at once.
	since := p.Event
	nodes["n3"].stop()
	ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
	defer cancel()
	if _, err := r.admin.WaitEvent(ctx, since, func(e api.Event) bool { return e.Type == api.EventNodeDown && e.Subject == "n3" }); err != nil {
		t.Fatal(err)
	}
	p = r.runProbe()
	if p.State != api.ProbeStateCompleted || p.Done != 1 || p.Failed != 2 {
		t.Fatalf("probe with n3 down %+v", p)
	}
	for _, pr := range p.Pairs {
		withN3 := pr.From == "n3" || pr.To == "n3"
		if withN3 && (pr.State != api.LinkFailed || pr.Error != "node n3 is down") || !withN3 && (pr.State != api.LinkDone || pr.Mbps <= 0) {
			t.Errorf("pair %+v", pr)
		}
	}
}
