package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// A rehearsal against real agents prints each wave's schedule and the verdict, healthy or
// failing, and changes nothing: no rollout, no rollout event, no assignment moved.
func TestRolloutRehearseChangesNothing(t *testing.T) {
	f := rolloutFleet(t)
	f.pushWith("hello", "2.0.0", "update: {min_healthy_time: 10s, healthy_deadline: 5m}\n")
	policy := f.policyFile(`name: careful
on_failure: rollback
waves:
  - {name: pilot, selector: "site=ams", max_parallel: 1, failure_threshold: 1, soak: 1d}
  - {name: rest, max_parallel: 2, approval: {count: 1}}
`)
	before := len(f.events())

	// Each node takes 50s to install and 10s to prove healthy: the pilot's two nodes one after
	// the other, then a day's soak, then the rest's two at once.
	out := f.mustFerry("rollout", "rehearse", "hello@2.0.0", "--policy", policy, "--seed", "3", "--install-time", "50s")
	for _, want := range []string{
		"hello@2.0.0 by policy careful, rehearsed on 4 node(s): 0 failing, 0 down throughout",
		"(seed 3, fail rate 0%, offline rate 0%, install time 50s)",
		"pilot  2      2     0       0            +0s     +2m      +1d2m",
		"rest   2      2     0       0            +1d2m   +1d3m    +1d3m",
		"completes after 1d3m\n",
		"assumed: wave rest waits for 1 approval(s) by admin: rehearsed as given at once\n",
		"nothing was changed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rehearse lacks %q:\n%s", want, out)
		}
	}

	// What if the pilot soaked two hours instead?
	out = f.mustFerry("rollout", "rehearse", "hello@2.0.0", "--policy", policy, "--set", "pilot.soak=2h", "--install-time", "50s")
	if !strings.Contains(out, "completes after 2h3m\n") {
		t.Errorf("rehearse --set pilot.soak=2h:\n%s", out)
	}

	// A release that fails everywhere halts at the pilot's first node, which is back at once.
	out = f.mustFerry("rollout", "rehearse", "hello@2.0.0", "--policy", policy, "--fail-rate", "100%", "--install-time", "50s")
	for _, want := range []string{
		"halts in wave pilot after 1m: wave pilot: 1 of 2 nodes failed (threshold 1)\n",
		"rolls back 1 node(s) in 0s, all back after 1m\n",
		"rest   2      0     0       0            -       -        -",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("a failing rehearsal lacks %q:\n%s", want, out)
		}
	}
	var r api.RolloutRehearsal
	out = f.mustFerry("rollout", "rehearse", "hello@2.0.0", "--policy", policy, "--fail-rate", "0.5", "--offline-rate", "0.5", "--seed", "-12", "-o", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("rehearse -o json printed %q: %v", out, err)
	}
	if r.Release != "hello@2.0.0" || r.Policy != "careful" || r.Seed != -12 || r.FailRate != 0.5 || len(r.Waves) != 2 || r.Outcome == "" || r.Outcome == api.RehearsalUnfinished {
		t.Errorf("rehearsal %+v", r)
	}
	if again := f.mustFerry("rollout", "rehearse", "hello@2.0.0", "--policy", policy, "--fail-rate", "0.5", "--offline-rate", "0.5", "--seed", "-12", "-o", "json"); again != out {
		t.Errorf("the same seed rehearsed\n%s\nthen\n%s", out, again)
	}

	for _, ev := range f.events()[before:] {
		if strings.HasPrefix(ev.Type, "rollout.") || ev.Type == api.EventReleaseDeployed || ev.Type == api.EventAppUndeploy {
			t.Errorf("a rehearsal wrote %s %s", ev.Type, ev.Subject)
		}
	}
	for _, n := range []string{"a1", "a2", "f1", "f2"} {
		if got := f.assigned(n, "hello"); got != "1.0.0" {
			t.Errorf("%s is assigned hello %s after rehearsals", n, got)
		}
	}
	if rs, err := f.admin.Rollouts(f.ctx, ""); err != nil || len(rs) != 0 {
		t.Errorf("rollouts after rehearsals: %+v %v", rs, err)
	}
}
