package rollout_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/rollout"
	"github.com/ferryhq/ferry/store"
)

// A rehearsal through the service takes its nodes from today's inventory as a plan does, keeps
// the nodes down today down, and writes nothing.
func TestServiceRehearseTodaysFleet(t *testing.T) {
	r := newEngineRig(t, map[string]int{"cern": 1, "lip": 2}, 2)
	r.status("lip-2", api.StatusDown)
	before, err := r.st.LastEventID(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := rollout.Request{App: "hello", Version: "2.0.0", Resolve: builtin("minor")}
	got, err := r.svc.Rehearse(r.ctx, req, rollout.RehearseOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got.Release != "hello@2.0.0" || got.Policy != "minor" || got.Outcome != api.RehearsalCompleted || got.Offline != 1 || got.Failing != 0 {
		t.Fatalf("rehearsal %+v", got)
	}
	// The pilot: cern's two nodes one at a time, each 30s to install and 10s to prove healthy,
	// then the 7-day soak.
	pilot := got.Waves[0]
	if pilot.Name != "pilot" || pilot.Nodes != 2 || pilot.Done != 2 || pilot.Finished == nil ||
		time.Duration(*pilot.Finished) != 2*(rollout.DefaultInstallTime+10*time.Second)+7*24*time.Hour {
		t.Fatalf("pilot %+v", pilot)
	}
	unreachable := 0
	for _, w := range got.Waves {
		unreachable += w.Unreachable
	}
	if unreachable != 1 {
		t.Errorf("%d unreachable, want lip-2: %+v", unreachable, got.Waves)
	}
	if after, _ := r.st.LastEventID(r.ctx); after != before {
		t.Errorf("a rehearsal wrote %d events", after-before)
	}
	if rs, err := r.svc.List(r.ctx, ""); err != nil || len(rs) != 0 {
		t.Errorf("rollouts after a rehearsal: %+v %v", rs, err)
	}

	if _, err := r.svc.Rehearse(r.ctx, req, rollout.RehearseOptions{FailRate: 2}); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("a fail rate of 2: %v", err)
	}
	if _, err := r.svc.Rehearse(r.ctx, rollout.Request{App: "hello", Version: "9.0.0", Resolve: builtin("minor")}, rollout.RehearseOptions{}); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("an unknown release: %v", err)
	}
}

// The rehearsal keeps the engine's schedule: the real engine over a real store, with agents that
// take the rehearsal's install time plus min_healthy_time to run what they are assigned, starts,
// finds healthy and finishes each wave at the very offsets the rehearsal printed.
func TestRehearsalKeepsTheEnginesSchedule(t *testing.T) {
	r := newEngineRig(t, map[string]int{"cern": 1, "lip": 2, "ral": 2}, 3)
	r.status("lip-2", api.StatusDown)
	req := rollout.Request{App: "hello", Version: "2.0.0", Resolve: builtin("minor")}
	rehearsed, err := r.svc.Rehearse(r.ctx, req, rollout.RehearseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ro, _, err := r.svc.Start(r.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	took := rollout.DefaultInstallTime + 10*time.Second // the release's default min_healthy_time
	due := map[string]time.Time{}                       // node → when its agent is through
	for range 1000 {
		wake, err := r.eng.StepAll(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		now, reported := r.clk.Now(), false
		nodes, err := r.st.Nodes(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Status != api.StatusUp || len(n.Assigned) == 0 || len(n.Apps) > 0 && n.Apps[0].Version == n.Assigned[0].Version {
				continue
			}
			at, ok := due[n.Name]
			if !ok {
				at = now.Add(took)
				due[n.Name] = at
			}
			if at.After(now) {
				if wake.IsZero() || at.Before(wake) {
					wake = at
				}
				continue
			}
			delete(due, n.Name)
			reported = true
			app := []api.NodeApp{{App: "hello", Version: n.Assigned[0].Version, State: api.AppStateRunning}}
			if err := r.st.Update(r.ctx, func(tx store.Tx) error { return tx.SetNodeApps(n.Name, app) }); err != nil {
				t.Fatal(err)
			}
		}
		if reported {
			continue
		}
		if ro = r.get(ro.ID); ro.State != rollout.StateRunning || wake.IsZero() {
			break
		}
		r.clk.Advance(wake.Sub(now))
	}
	if ro.State != rollout.StateCompleted || rehearsed.Outcome != api.RehearsalCompleted || len(ro.Waves) != len(rehearsed.Waves) {
		t.Fatalf("the engine %s (%s), the rehearsal %s", ro.State, ro.Reason, rehearsed.Outcome)
	}
	offset := func(at *time.Time) time.Duration { return at.Sub(start) }
	for i, w := range ro.Waves {
		g := rehearsed.Waves[i]
		if offset(w.Started) != time.Duration(*g.Started) || offset(w.Healthy) != time.Duration(*g.Healthy) || offset(w.Until) != time.Duration(*g.Finished) {
			t.Errorf("wave %s: the engine started %v, healthy %v, done %v; the rehearsal %v, %v, %v", w.Name,
				offset(w.Started), offset(w.Healthy), offset(w.Until), time.Duration(*g.Started), time.Duration(*g.Healthy), time.Duration(*g.Finished))
		}
		if w.Done != g.Done || w.Unreachable != g.Unreachable {
			t.Errorf("wave %s: the engine %d done, %d unreachable; the rehearsal %d, %d", w.Name, w.Done, w.Unreachable, g.Done, g.Unreachable)
		}
	}
}
