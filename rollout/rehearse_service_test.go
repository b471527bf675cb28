package rollout_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/rollout"
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
