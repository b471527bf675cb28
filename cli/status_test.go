package cli

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/server"
)

// ferry status shows each site's nodes up and down and its health as the fleet changes, and
// the open rollouts with their waves; -o json has the contract's keys.
func TestStatus(t *testing.T) {
	// A short grace, so a stopped agent's node is down within a second.
	f := newFleetWith(t, server.Config{HeartbeatInterval: 250 * time.Millisecond, HeartbeatGrace: time.Second})
	f.agent("a1", "ams", nil)
	f.agent("a2", "ams", nil)
	stopF1 := f.agent("f1", "fra", nil)
	f.mustFerry("site", "add", "lis", "--tier", "3")
	f.push("hello", "1.0.0")
	f.mustFerry("deploy", "hello@1.0.0", "--all", "--wait")
	f.push("hello", "1.1.0")
	r := f.startRollout("hello@1.1.0", "--policy", f.policyFile(`name: gated
waves:
  - {name: pilot, selector: "site=ams", approval: {count: 1}, healthy_deadline: 30s}
  - {name: rest, healthy_deadline: 30s}
`))
	f.waitRollout(r.ID, func(e api.Event) bool {
		var d api.RolloutWaveChanged
		return e.Type == api.EventRolloutWave && e.Decode(&d) == nil && d.State == "awaiting_approval"
	})

	status := func() api.Status {
		t.Helper()
		var st api.Status
		if out := f.mustFerry("status", "-o", "json"); json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status -o json printed %q", out)
		}
		return st
	}
	sites := func(st api.Status) string {
		var b strings.Builder
		for _, s := range st.Sites {
			b.WriteString(s.Name + ":" + s.Health + ":" + strconv.Itoa(s.Up) + "/" + strconv.Itoa(s.Down) + " ")
		}
		return b.String()
	}
	st := status()
	if got, want := sites(st), "ams:ok:2/0 fra:ok:1/0 lis:unknown:0/0 "; got != want {
		t.Fatalf("sites %s, want %s", got, want)
	}
	if len(st.Checks) != 0 || st.Alerts != 0 {
		t.Fatalf("checks %v, alerts %d with no checks set", st.Checks, st.Alerts)
	}
	if len(st.Rollouts) != 1 || st.Rollouts[0].ID != r.ID || st.Rollouts[0].State != "running" || len(st.Rollouts[0].Waves) != 2 ||
		st.Rollouts[0].Waves[0].Name != "pilot" || st.Rollouts[0].Waves[0].State != "awaiting_approval" || st.Rollouts[0].Waves[0].Nodes != 2 ||
		st.Rollouts[0].Waves[1].Nodes != 1 {
		t.Fatalf("rollouts %+v", st.Rollouts)
	}

	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	since := f.events()[len(f.events())-1].ID
	stopF1()
	if _, err := f.admin.WaitEvent(ctx, since, func(e api.Event) bool { return e.Type == api.EventNodeDown && e.Subject == "f1" }); err != nil {
		t.Fatalf("f1 not down: %v", err)
	}
	if got, want := sites(status()), "ams:ok:2/0 fra:unreachable:0/1 lis:unknown:0/0 "; got != want {
		t.Fatalf("after f1 stopped: sites %s, want %s", got, want)
	}

	// The keys of the JSON contract, as scripts read them.
	out := f.mustFerry("status", "-o", "json")
	var doc struct {
		Sites    []map[string]any `json:"sites"`
		Checks   []any            `json:"checks"`
		Rollouts []any            `json:"rollouts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Sites == nil || doc.Checks == nil || doc.Rollouts == nil {
		t.Fatalf("status -o json lacks sites, checks or rollouts (%v): %s", err, out)
	}
	for _, k := range []string{"name", "health", "up", "down"} {
		if _, ok := doc.Sites[0][k]; !ok {
			t.Errorf("a site in status -o json has no %q: %s", k, out)
		}
	}

	if _, errOut, code := f.ferry("status", "now"); code != 2 || !strings.Contains(errOut, "takes no arguments") {
		t.Errorf("status with an argument: exit %d %s", code, errOut)
	}
	table := f.mustFerry("status")
	for _, want := range []string{"3 sites, 2 nodes up, 1 down; 0 failing checks; 0 alerts not acknowledged; 1 open rollouts",
		"fra   unreachable  0   1", "hello@1.1.0", "pilot awaiting_approval 0/2, rest pending 0/1"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
}
