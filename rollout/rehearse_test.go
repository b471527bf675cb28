package rollout

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"pgregory.net/rapid"
)

// fleetOf is the simulated copy of the fleet a plan was made from: each node on its From.
func fleetOf(p Plan) []Target {
	var out []Target
	for _, w := range p.Waves {
		for _, n := range w.Nodes {
			out = append(out, Target{Name: n.Name, Site: n.Site, From: n.From})
		}
	}
	return out
}

func at(d *api.Duration) time.Duration {
	if d == nil {
		return -1
	}
	return time.Duration(*d)
}

// seedWhere finds a seed whose draw gives each named node the fate wanted (true: the release
// fails on it), at the fail rate given, so a test can rely on who fails.
func seedWhere(t *testing.T, rate float64, fails map[string]bool) int64 {
	t.Helper()
	for seed := range int64(10_000) {
		ok := true
		for name, want := range fails {
			if got, _ := draw(seed, name, rate, 0); got != want {
				ok = false
				break
			}
		}
		if ok {
			return seed
		}
	}
	t.Fatalf("no seed gives %v", fails)
	return 0
}

// With nothing failing, the schedule is the ideal one: per wave, a window of install time and
// min_healthy_time for each max_parallel nodes, then its soak.
func TestRehearseHealthyScheduleIsWindowsPlusSoaks(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1"), MinHealthyTime: 10 * time.Second, Soak: 24 * time.Hour},
		PlanWave{Name: "rest", Nodes: append(siteNodes("ams", "a2", "a3"), siteNodes("fra", "f1", "f2", "f3")...),
			MaxParallel: 2, MinHealthyTime: 20 * time.Second, Soak: time.Hour},
	)
	got := Rehearse(p, "2.0", fleetOf(p), RehearseOptions{InstallTime: 30 * time.Second, Seed: 7})
	pilot := 40 * time.Second                     // one window of 30s + 10s
	rest := 3 * (30*time.Second + 20*time.Second) // ⌈5/2⌉ windows
	if got.Outcome != api.RehearsalCompleted || got.Halt != nil || got.Rollback != nil {
		t.Fatalf("outcome %s, halt %+v, rollback %+v", got.Outcome, got.Halt, got.Rollback)
	}
	want := []struct{ started, healthy, finished time.Duration }{
		{0, pilot, pilot + 24*time.Hour},
		{pilot + 24*time.Hour, pilot + 24*time.Hour + rest, pilot + 24*time.Hour + rest + time.Hour},
	}
	for i, w := range want {
		g := got.Waves[i]
		if at(g.Started) != w.started || at(g.Healthy) != w.healthy || at(g.Finished) != w.finished {
			t.Errorf("wave %s: started %v healthy %v finished %v; want %v %v %v", g.Name, at(g.Started), at(g.Healthy), at(g.Finished), w.started, w.healthy, w.finished)
		}
		if g.Done != g.Nodes || g.Failed != 0 || g.Unreachable != 0 {
			t.Errorf("wave %s: %+v", g.Name, g)
		}
	}
	if time.Duration(got.Took) != want[1].finished {
		t.Errorf("took %v, want %v", time.Duration(got.Took), want[1].finished)
	}
	if got.Failing != 0 || got.Offline != 0 || len(got.Assumed) != 0 {
		t.Errorf("failing %d offline %d assumed %q", got.Failing, got.Offline, got.Assumed)
	}
}

// A release that fails everywhere halts in the pilot at the first failure and rolls back at
// once: the failed node runs its old release already. The later wave never starts.
func TestRehearseFailingReleaseHaltsInPilot(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1", "a2"), MinHealthyTime: 10 * time.Second},
		PlanWave{Name: "rest", Nodes: siteNodes("fra", "f1", "f2"), MaxParallel: 2},
	)
	got := Rehearse(p, "2.0", fleetOf(p), RehearseOptions{FailRate: 1})
	if got.Outcome != api.RehearsalRolledBack || got.Halt == nil || got.Rollback == nil {
		t.Fatalf("outcome %s, halt %+v, rollback %+v", got.Outcome, got.Halt, got.Rollback)
	}
	if got.Halt.Wave != "pilot" || !strings.Contains(got.Halt.Reason, "wave pilot: 1 of 2 nodes failed (threshold 1)") ||
		time.Duration(got.Halt.At) != DefaultInstallTime+10*time.Second {
		t.Errorf("halt %+v", got.Halt)
	}
	if got.Rollback.Nodes != 1 || got.Rollback.Failed != 0 || got.Rollback.Took != 0 {
		t.Errorf("rollback %+v, want 1 node back at once", got.Rollback)
	}
	if w := got.Waves[0]; w.Failed != 1 || w.Done != 0 || w.Finished != nil {
		t.Errorf("pilot %+v", w)
	}
	if w := got.Waves[1]; w.Started != nil || w.Done+w.Failed+w.Unreachable != 0 {
		t.Errorf("rest was touched: %+v", w)
	}
	if got.Failing != 4 {
		t.Errorf("failing %d, want every node", got.Failing)
	}
}

// A node that was healthy on the release goes back within the limits when a later node fails,
// and that takes its install window; with on_failure: pause the nodes stay as they are.
func TestRehearseRollbackTakesTime(t *testing.T) {
	seed := seedWhere(t, 0.5, map[string]bool{"a1": false, "a2": true})
	for _, onFailure := range []string{OnFailureRollback, OnFailurePause} {
		p := mkPlan(onFailure, PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1", "a2"), MinHealthyTime: 20 * time.Second})
		got := Rehearse(p, "2.0", fleetOf(p), RehearseOptions{FailRate: 0.5, Seed: seed, InstallTime: time.Minute})
		window := time.Minute + 20*time.Second
		if got.Halt == nil || time.Duration(got.Halt.At) != 2*window {
			t.Fatalf("%s: halt %+v, want at %v", onFailure, got.Halt, 2*window)
		}
		if w := got.Waves[0]; w.Done != 1 || w.Failed != 1 {
			t.Errorf("%s: pilot %+v", onFailure, w)
		}
		switch onFailure {
		case OnFailureRollback:
			if got.Outcome != api.RehearsalRolledBack || got.Rollback == nil || got.Rollback.Nodes != 2 || time.Duration(got.Rollback.Took) != window ||
				time.Duration(got.Took) != 3*window {
				t.Errorf("rollback: outcome %s %+v, took %v", got.Outcome, got.Rollback, time.Duration(got.Took))
			}
		case OnFailurePause:
			if got.Outcome != api.RehearsalHalted || got.Rollback != nil || time.Duration(got.Took) != 2*window {
				t.Errorf("pause: outcome %s %+v, took %v", got.Outcome, got.Rollback, time.Duration(got.Took))
			}
		}
	}
}

// Nodes down throughout (drawn offline, down today, or gone from the fleet) are unreachable, not
// failed: each wave waits its unreachable deadline for them, then completes without them.
func TestRehearseOfflineNodesAreUnreachable(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1", "a2"), UnreachableDeadline: 30 * time.Minute},
		PlanWave{Name: "rest", Nodes: siteNodes("fra", "f1", "f2"), MaxParallel: 2, UnreachableDeadline: 2 * time.Hour},
	)
	got := Rehearse(p, "2.0", fleetOf(p), RehearseOptions{OfflineRate: 1})
	if got.Outcome != api.RehearsalCompleted || got.Offline != 4 || time.Duration(got.Took) != 150*time.Minute {
		t.Fatalf("outcome %s, offline %d, took %v", got.Outcome, got.Offline, time.Duration(got.Took))
	}
	for _, w := range got.Waves {
		if w.Unreachable != w.Nodes || w.Done != 0 || w.Failed != 0 {
			t.Errorf("wave %+v", w)
		}
	}

	// At no offline rate, a node down today and one gone from the fleet are down all the same.
	fleet := slices.DeleteFunc(fleetOf(p), func(t Target) bool { return t.Name == "f2" })
	got = Rehearse(p, "2.0", fleet, RehearseOptions{Down: []string{"a2"}})
	if got.Outcome != api.RehearsalCompleted || got.Offline != 2 {
		t.Fatalf("outcome %s, offline %d", got.Outcome, got.Offline)
	}
	for _, w := range got.Waves {
		if w.Unreachable != 1 || w.Done != 1 {
			t.Errorf("wave %+v, want one done and one unreachable", w)
		}
	}
}

// Nodes that run the release already are done at once: only the soak takes time.
func TestRehearseNothingToChange(t *testing.T) {
	p := mkPlan(OnFailureRollback, PlanWave{Name: "all", Nodes: siteNodes("ams", "a1", "a2"), Soak: time.Hour})
	fleet := fleetOf(p)
	for i := range fleet {
		fleet[i].From = "2.0"
	}
	got := Rehearse(p, "2.0", fleet, RehearseOptions{FailRate: 1})
	if got.Outcome != api.RehearsalCompleted || time.Duration(got.Took) != time.Hour || got.Waves[0].Done != 2 {
		t.Fatalf("%+v", got)
	}
}

// Approvals and acknowledgements are given at once and feedback windows pass with no bad
// report, and the result says so; the windows still take their time.
func TestRehearseGatesAreAssumed(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: append(siteNodes("ams", "a1"), siteNodes("fra", "f1")...), MaxParallel: 2,
			Approvals: 1, ApprovalRole: api.RoleAdmin, Acks: &AckPlan{Deadline: 72 * time.Hour, Remind: 24 * time.Hour, Escalate: 48 * time.Hour},
			FeedbackWindow: 14 * 24 * time.Hour, FeedbackRemind: time.Second},
		PlanWave{Name: "rest", Nodes: siteNodes("ber", "b1"), Approvals: 2, ApprovalRole: api.RoleAdmin},
	)
	got := Rehearse(p, "2.0", fleetOf(p), RehearseOptions{})
	window := DefaultInstallTime
	if got.Outcome != api.RehearsalCompleted || time.Duration(got.Took) != window+14*24*time.Hour+window {
		t.Fatalf("outcome %s took %v note %q", got.Outcome, time.Duration(got.Took), got.Note)
	}
	want := []string{
		"wave pilot waits for 1 approval(s) by admin: rehearsed as given at once",
		"wave pilot asks 2 sites (ams, fra) to acknowledge within 3d: rehearsed as acknowledged at once",
		"wave pilot gives its sites 14d to report: rehearsed with none reporting a problem",
		"wave rest waits for 2 approval(s) by admin: rehearsed as given at once",
	}
	if !slices.Equal(got.Assumed, want) {
		t.Errorf("assumed\n%q\nwant\n%q", got.Assumed, want)
	}
	// A reminder every second of the window would cost a step each: the rehearsal sends none.
	if got.Steps > 50 {
		t.Errorf("%d steps", got.Steps)
	}
}

func TestRehearseIsBounded(t *testing.T) {
	p := mkPlan(OnFailureRollback, PlanWave{Name: "all", Nodes: siteNodes("ams", "a1", "a2", "a3")})
	got := Rehearse(p, "2.0", fleetOf(p), RehearseOptions{MaxSteps: 2})
	if got.Outcome != api.RehearsalUnfinished || got.Steps != 2 || !strings.Contains(got.Note, "stopped after 2 steps") {
		t.Fatalf("outcome %s steps %d note %q", got.Outcome, got.Steps, got.Note)
	}
}

func TestRehearseIsDeterministic(t *testing.T) {
	var nodes []PlanNode
	for _, site := range []string{"ams", "fra", "ber"} {
		for _, n := range []string{"1", "2", "3", "4", "5", "6", "7", "8"} {
			nodes = append(nodes, PlanNode{Name: site + n, Site: site, From: "1.0"})
		}
	}
	p := mkPlan(OnFailurePause,
		PlanWave{Name: "pilot", Nodes: nodes[:4], Soak: time.Hour},
		PlanWave{Name: "rest", Nodes: nodes[4:], MaxParallel: 5, FailureThreshold: 4})
	o := RehearseOptions{FailRate: 0.1, OfflineRate: 0.1, Seed: 42}
	first := Rehearse(p, "2.0", fleetOf(p), o)
	if again := Rehearse(p, "2.0", fleetOf(p), o); !reflect.DeepEqual(first, again) {
		t.Fatalf("the same seed gave\n%+v\nthen\n%+v", first, again)
	}
	differs := false
	for seed := range int64(20) {
		o.Seed = seed
		if got := Rehearse(p, "2.0", fleetOf(p), o); got.Failing != first.Failing || got.Offline != first.Offline || got.Outcome != first.Outcome {
			differs = true
			break
		}
	}
	if !differs {
		t.Error("twenty seeds gave the same rehearsal")
	}
}

func TestRehearseOptionsCheck(t *testing.T) {
	for _, o := range []RehearseOptions{{FailRate: -0.1}, {FailRate: 1.01}, {OfflineRate: 2}, {InstallTime: -time.Second}, {InstallTime: 25 * time.Hour}} {
		if o.Check() == nil {
			t.Errorf("%+v passed", o)
		}
	}
	for _, o := range []RehearseOptions{{}, {FailRate: 1, OfflineRate: 1, Seed: -9, InstallTime: time.Hour}} {
		if err := o.Check(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// Over random plans and fleets: a rehearsal ends (never unfinished within its bound); no wave
// counts more nodes than it has; a completed wave accounts for every node; it halts exactly when
// a wave's failures reach its threshold, no wave starting after that; waves start in order;
// only drawn nodes fail and only down ones are unreachable.
func TestRehearseProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := genPlan(t)
		o := RehearseOptions{
			FailRate:    rapid.Float64Range(0, 1).Draw(t, "fail_rate"),
			OfflineRate: rapid.Float64Range(0, 0.5).Draw(t, "offline_rate"),
			Seed:        rapid.Int64().Draw(t, "seed"),
			InstallTime: time.Duration(rapid.IntRange(0, 50).Draw(t, "install")) * time.Second,
		}
		got := Rehearse(p, "2.0", fleetOf(p), o)
		if got.Outcome == api.RehearsalUnfinished {
			t.Fatalf("unfinished: %s", got.Note)
		}
		crossed := -1
		failed, unreachable := 0, 0
		var prev *api.Duration
		for i, w := range got.Waves {
			failed += w.Failed
			unreachable += w.Unreachable
			if w.Done+w.Failed+w.Unreachable > w.Nodes {
				t.Fatalf("wave %s counts %d+%d+%d of %d nodes", w.Name, w.Done, w.Failed, w.Unreachable, w.Nodes)
			}
			if w.Finished != nil && w.Done+w.Failed+w.Unreachable != w.Nodes {
				t.Fatalf("wave %s done with %d+%d+%d of %d nodes", w.Name, w.Done, w.Failed, w.Unreachable, w.Nodes)
			}
			if w.Failed >= p.Waves[i].FailureThreshold && crossed < 0 {
				crossed = i
			}
			if w.Started != nil && (i > 0 && prev == nil || prev != nil && *w.Started < *prev) {
				t.Fatalf("wave %s started at %v before the wave before it was done (%v)", w.Name, at(w.Started), at(prev))
			}
			if crossed >= 0 && i > crossed && w.Started != nil {
				t.Fatalf("wave %s started after wave %d crossed its threshold", w.Name, crossed)
			}
			prev = w.Finished
		}
		halted := got.Outcome == api.RehearsalHalted || got.Outcome == api.RehearsalRolledBack
		if halted != (crossed >= 0) || halted != (got.Halt != nil) {
			t.Fatalf("outcome %s, halt %+v, but wave %d crossed its threshold", got.Outcome, got.Halt, crossed)
		}
		if failed > got.Failing || unreachable > got.Offline {
			t.Fatalf("%d failed of %d failing, %d unreachable of %d offline", failed, got.Failing, unreachable, got.Offline)
		}
		if (got.Outcome == api.RehearsalRolledBack) != (got.Rollback != nil) || got.Halt != nil && got.Halt.At > got.Took {
			t.Fatalf("outcome %s rollback %+v halt %+v took %v", got.Outcome, got.Rollback, got.Halt, got.Took)
		}
	})
}
