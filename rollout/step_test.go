package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// fleet is a toy fleet for the reconciler: each node runs a version, is up or down, and takes
// what it is assigned at the next tick: healthy, or rolled back when it is set to fail.
type toyFleet struct {
	nodes map[string]*toyNode
}

type toyNode struct {
	up       bool
	version  string
	desired  string
	state    string
	pending  string
	fails    bool // the new release fails on it
	assigned []string
	attempt  int64 // of the last assignment
	answered int64 // the attempt its state answers
}

func newFleet(p Plan) *toyFleet {
	f := &toyFleet{nodes: map[string]*toyNode{}}
	for _, w := range p.Waves {
		for _, n := range w.Nodes {
			f.nodes[n.Name] = &toyNode{up: true, version: n.From, desired: n.From, state: stateFor(n.From)}
		}
	}
	return f
}

func stateFor(v string) string {
	if v == "" {
		return ""
	}
	return api.AppStateRunning
}

func (f *toyFleet) observe() map[string]Observed {
	out := map[string]Observed{}
	for name, n := range f.nodes {
		out[name] = Observed{Up: n.up, Version: n.version, State: n.state, Pending: n.pending, Attempt: n.answered}
	}
	return out
}

// apply takes a step's assignments.
func (f *toyFleet) apply(acts []Action) {
	for _, a := range acts {
		if a.Kind != ActAssign {
			continue
		}
		for _, name := range a.Nodes {
			n := f.nodes[name]
			n.desired, n.attempt = a.Version, a.Attempt
			n.assigned = append(n.assigned, a.Version)
		}
	}
}

// tick lets every node that is up act on its desired release, as an agent would.
func (f *toyFleet) tick(target string) {
	for _, n := range f.nodes {
		if !n.up || n.desired == n.version && n.pending == "" || n.pending == n.desired && n.answered == n.attempt {
			continue
		}
		n.answered = n.attempt
		switch {
		case n.desired == n.version:
			n.state, n.pending = stateFor(n.version), ""
		case n.desired == target && n.fails:
			n.state, n.pending = api.AppStateRolledBack, target
		default:
			n.version, n.state, n.pending = n.desired, stateFor(n.desired), ""
		}
	}
}

func mkPlan(onFailure string, waves ...PlanWave) Plan {
	for i := range waves {
		w := &waves[i]
		if w.MaxParallel == 0 {
			w.MaxParallel = 1
		}
		if w.FailureThreshold == 0 {
			w.FailureThreshold = 1
		}
		if w.HealthyDeadline == 0 {
			w.HealthyDeadline = 5 * time.Minute
		}
		if w.UnreachableDeadline == 0 {
			w.UnreachableDeadline = time.Hour
		}
	}
	return Plan{OnFailure: onFailure, Waves: waves}
}

func siteNodes(site string, names ...string) []PlanNode {
	var out []PlanNode
	for _, n := range names {
		out = append(out, PlanNode{Name: n, Site: site, From: "1.0"})
	}
	return out
}

// run steps the rollout, ticking the fleet after each step and moving the clock to the next
// wake-up when nothing changes, until it rests (no action and no wake-up) or n steps.
type run struct {
	t     *testing.T
	p     Plan
	f     *toyFleet
	pr    Progress
	now   time.Time
	notes []Note
	acts  []Action
}

func start(t *testing.T, p Plan) *run {
	return &run{t: t, p: p, f: newFleet(p), pr: Begin(p), now: t0}
}

func (r *run) step() Result {
	res := Step(r.p, "2.0", r.pr, r.f.observe(), r.now)
	r.pr = res.Progress
	r.notes = append(r.notes, res.Notes...)
	r.acts = append(r.acts, res.Actions...)
	r.f.apply(res.Actions)
	return res
}

// settle steps and ticks until a step changes nothing; it returns the last wake-up asked for.
func (r *run) settle() time.Time {
	for range 1000 {
		before := fmt.Sprint(r.pr, r.f.observe())
		res := r.step()
		r.f.tick("2.0")
		if len(res.Actions) == 0 && fmt.Sprint(r.pr, r.f.observe()) == before {
			return res.Wake
		}
	}
	r.t.Fatal("rollout never settled")
	return time.Time{}
}

// until settles, then moves the clock to each wake-up in turn until the rollout reaches state or
// has nothing more to wait for.
func (r *run) until(state string) {
	r.t.Helper()
	for range 100 {
		wake := r.settle()
		if r.pr.State == state {
			return
		}
		if wake.IsZero() {
			r.t.Fatalf("rollout rests in %s (%s), want %s", r.pr.State, r.pr.Reason, state)
		}
		r.now = wake
	}
	r.t.Fatalf("rollout never reached %s", state)
}

func TestHealthyRolloutPassesEveryWave(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1"), Soak: 24 * time.Hour},
		PlanWave{Name: "rest", Nodes: append(siteNodes("ams", "a2", "a3"), siteNodes("fra", "f1", "f2")...), MaxParallel: 2},
	)
	r := start(t, p)
	r.settle()
	if got := r.f.nodes["a2"].assigned; len(got) != 0 {
		t.Fatalf("a2 was assigned %v before the pilot soaked", got)
	}
	if r.pr.Waves[0].State != WaveSoaking {
		t.Fatalf("pilot is %s, want soaking", r.pr.Waves[0].State)
	}
	r.until(StateCompleted)
	for name, n := range r.f.nodes {
		if n.version != "2.0" || len(n.assigned) != 1 {
			t.Errorf("%s runs %s, assigned %v; want 2.0 assigned once", name, n.version, n.assigned)
		}
	}
	if r.now.Before(t0.Add(24 * time.Hour)) {
		t.Errorf("completed at %s, before the pilot's soak ended", r.now)
	}
	if c := r.pr.Counts(p, 1); c.Done != 4 {
		t.Errorf("wave rest counts %+v, want 4 done", c)
	}
}

func TestCrashInPilotRollsBackThePilotOnly(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1", "a2"), MaxParallel: 2, FailureThreshold: 1},
		PlanWave{Name: "rest", Nodes: siteNodes("fra", "f1", "f2")},
	)
	r := start(t, p)
	r.f.nodes["a1"].fails = true
	r.until(StateRolledBack)
	for _, name := range []string{"a1", "a2"} {
		if n := r.f.nodes[name]; n.version != "1.0" || n.desired != "1.0" {
			t.Errorf("%s runs %s, desired %s; want 1.0", name, n.version, n.desired)
		}
	}
	for _, name := range []string{"f1", "f2"} {
		if n := r.f.nodes[name]; len(n.assigned) != 0 {
			t.Errorf("%s outside the pilot was assigned %v", name, n.assigned)
		}
	}
	if !strings.Contains(r.pr.Reason, "wave pilot: 1 of 2 nodes failed") {
		t.Errorf("reason %q", r.pr.Reason)
	}
	if np := r.pr.Nodes["a1"]; np.State != NodeReverted {
		t.Errorf("a1 is %s, want reverted", np.State)
	}
}

func TestFailureBelowThresholdCompletesAndPauseHalts(t *testing.T) {
	p := mkPlan(OnFailurePause, PlanWave{Name: "all", Nodes: siteNodes("ams", "a1", "a2", "a3", "a4"), MaxParallel: 4, FailureThreshold: 2})
	r := start(t, p)
	r.f.nodes["a1"].fails = true
	r.until(StateCompleted)
	if c := r.pr.Counts(p, 0); c.Failed != 1 || c.Done != 3 {
		t.Fatalf("counts %+v, want 1 failed 3 done", c)
	}

	r = start(t, p)
	r.f.nodes["a1"].fails = true
	r.f.nodes["a2"].fails = true
	r.until(StateHalted)
	if r.f.nodes["a3"].desired != "2.0" {
		t.Errorf("a halt that pauses put nodes back: a3 desired %s", r.f.nodes["a3"].desired)
	}
	// The operator fixes the cause and retries: the failed nodes are tried again.
	r.f.nodes["a1"].fails, r.f.nodes["a2"].fails = false, false
	pr, err := Retry(r.pr)
	if err != nil {
		t.Fatal(err)
	}
	r.pr = pr
	r.until(StateCompleted)
	if got := r.f.nodes["a1"].assigned; !slices.Equal(got, []string{"2.0", "2.0"}) {
		t.Errorf("a1 assigned %v, want 2.0 twice (the retry)", got)
	}
	if r.pr.Attempt != 1 {
		t.Errorf("attempt %d", r.pr.Attempt)
	}
}

func TestOfflineNodeIsUnreachableNotFailedAndCaughtUp(t *testing.T) {
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: siteNodes("ams", "a1", "a2"), MaxParallel: 2, UnreachableDeadline: time.Hour},
		PlanWave{Name: "rest", Nodes: siteNodes("fra", "f1")},
	)
	r := start(t, p)
	r.f.nodes["a2"].up = false
	r.settle()
	if np := r.pr.Nodes["a2"]; np.State != NodeUnreachable {
		t.Fatalf("a2 is %s, want unreachable", np.State)
	}
	if r.pr.Waves[0].State != WaveRunning {
		t.Fatalf("pilot is %s before the unreachable deadline", r.pr.Waves[0].State)
	}
	r.until(StateCompleted)
	if r.now.Before(t0.Add(time.Hour)) {
		t.Errorf("completed at %s, before a2's deadline", r.now)
	}
	if c := r.pr.Counts(p, 0); c.Unreachable != 1 || c.Failed != 0 {
		t.Errorf("pilot counts %+v", c)
	}
	// It returns after the rollout completed: it is caught up.
	r.f.nodes["a2"].up = true
	r.settle()
	if n := r.f.nodes["a2"]; n.version != "2.0" {
		t.Errorf("a2 runs %s after it returned", n.version)
	}
	if np := r.pr.Nodes["a2"]; np.State != NodeDone {
		t.Errorf("a2 is %s", np.State)
	}
}

func TestMaxUnavailablePerSite(t *testing.T) {
	p := mkPlan(OnFailureRollback, PlanWave{Name: "all", Nodes: append(siteNodes("ams", "a1", "a2", "a3"), siteNodes("fra", "f1", "f2", "f3")...),
		MaxParallel: 10, MaxUnavailablePerSite: map[string]int{"ams": 1, "fra": 2}})
	r := start(t, p)
	res := r.step()
	if len(res.Actions) != 1 || !slices.Equal(res.Actions[0].Nodes, []string{"a1", "f1", "f2"}) {
		t.Fatalf("first step %+v, want a1 f1 f2", res.Actions)
	}
	r.until(StateCompleted)
}

func TestApprovalAcksAndFeedback(t *testing.T) {
	day := 24 * time.Hour
	p := mkPlan(OnFailureRollback,
		PlanWave{Name: "pilot", Nodes: append(siteNodes("ams", "a1"), siteNodes("fra", "f1")...), MaxParallel: 2,
			Approvals: 1, ApprovalRole: "admin",
			Acks:           &AckPlan{Deadline: 3 * day, Remind: day, Escalate: 2 * day},
			FeedbackWindow: 14 * day, FeedbackRemind: 3 * day},
		PlanWave{Name: "rest", Nodes: siteNodes("ber", "b1")},
	)
	r := start(t, p)
	r.settle()
	if r.pr.Waves[0].State != WaveApproval || len(r.acts) != 0 {
		t.Fatalf("wave %s, actions %v: want awaiting approval, nothing done", r.pr.Waves[0].State, r.acts)
	}
	pr, err := Approve(p, r.pr, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Approve(p, pr, "alice"); err == nil {
		t.Error("alice approved twice")
	}
	r.pr = pr
	r.settle()
	if want := (Action{Kind: ActAckRequest, Sites: []string{"ams", "fra"}}); len(r.acts) != 1 || fmt.Sprint(r.acts[0]) != fmt.Sprint(want) {
		t.Fatalf("actions %+v, want the ack request", r.acts)
	}
	if r.pr, err = Ack(p, r.pr, "ams", "bob@ams", r.now); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if r.f.nodes["a1"].desired != "2.0" || r.f.nodes["f1"].desired != "1.0" {
		t.Fatalf("a1 desired %s, f1 desired %s: only the acknowledging site moves", r.f.nodes["a1"].desired, r.f.nodes["f1"].desired)
	}
	r.acts = nil
	r.now = t0.Add(day)
	r.settle()
	r.now = t0.Add(2 * day)
	r.settle()
	var kinds []string
	for _, a := range r.acts {
		kinds = append(kinds, a.Kind+":"+strings.Join(a.Sites, ","))
	}
	if want := []string{"ack_remind:fra", "ack_remind:fra", "ack_escalate:fra"}; !slices.Equal(kinds, want) {
		t.Fatalf("actions %v, want %v", kinds, want)
	}
	r.now = t0.Add(3 * day)
	r.settle()
	if np := r.pr.Nodes["f1"]; np.State != NodeSkipped {
		t.Fatalf("f1 is %s after fra missed the deadline", np.State)
	}
	if r.pr.Waves[0].State != WaveSoaking {
		t.Fatalf("pilot is %s, want in its feedback window", r.pr.Waves[0].State)
	}
	// A bad report in the window halts and rolls back what moved.
	if r.pr, err = Report(p, r.pr, "ams", false, "jobs fail at ams", "bob@ams", r.now); err != nil {
		t.Fatal(err)
	}
	r.until(StateRolledBack)
	if r.f.nodes["a1"].version != "1.0" || len(r.f.nodes["b1"].assigned) != 0 {
		t.Errorf("a1 runs %s, b1 assigned %v", r.f.nodes["a1"].version, r.f.nodes["b1"].assigned)
	}
	if !strings.Contains(r.pr.Reason, "jobs fail at ams") {
		t.Errorf("reason %q", r.pr.Reason)
	}
}

func TestPauseAbortAndRollbackLimits(t *testing.T) {
	p := mkPlan(OnFailureRollback, PlanWave{Name: "all", Nodes: siteNodes("ams", "a1", "a2", "a3", "a4"), MaxParallel: 2})
	r := start(t, p)
	r.step()
	pr, err := Pause(r.pr)
	if err != nil {
		t.Fatal(err)
	}
	r.pr = pr
	r.settle()
	if n := r.f.nodes["a3"]; len(n.assigned) != 0 {
		t.Fatalf("a paused rollout moved a3: %v", n.assigned)
	}
	if _, err := Pause(r.pr); err == nil {
		t.Error("paused twice")
	}
	if r.pr, err = Resume(r.pr); err != nil {
		t.Fatal(err)
	}
	r.until(StateCompleted)
	// Rolling back a completed rollout: healthy nodes go back two at a time.
	if r.pr, err = Rollback(r.pr, "operator"); err != nil {
		t.Fatal(err)
	}
	res := r.step()
	if len(res.Actions) != 1 || len(res.Actions[0].Nodes) != 2 || res.Actions[0].Version != "1.0" {
		t.Fatalf("first rollback step %+v, want two nodes back to 1.0", res.Actions)
	}
	r.until(StateRolledBack)
	if _, err := Retry(r.pr); err == nil {
		t.Error("a rolled back rollout was retried")
	}
}

func TestStepIsIdempotent(t *testing.T) {
	p := mkPlan(OnFailureRollback, PlanWave{Name: "all", Nodes: siteNodes("ams", "a1", "a2"), MaxParallel: 1})
	f := newFleet(p)
	res := Step(p, "2.0", Begin(p), f.observe(), t0)
	again := Step(p, "2.0", res.Progress, f.observe(), t0)
	if len(again.Actions) != 0 || len(again.Notes) != 0 {
		t.Fatalf("a step repeated asked for %+v, noted %+v", again.Actions, again.Notes)
	}
	if !again.Wake.Equal(t0.Add(5*time.Minute + JudgeGrace)) {
		t.Errorf("wake %s, want the healthy deadline", again.Wake)
	}
}

func TestNodeMissingItsDeadlineFails(t *testing.T) {
	p := mkPlan(OnFailureRollback, PlanWave{Name: "all", Nodes: siteNodes("ams", "a1"), HealthyDeadline: time.Minute})
	f := newFleet(p)
	res := Step(p, "2.0", Begin(p), f.observe(), t0)
	obs := f.observe()
	o := obs["a1"]
	o.State, o.Pending = api.AppStateVerifying, "2.0"
	obs["a1"] = o
	if again := Step(p, "2.0", res.Progress, obs, t0.Add(time.Minute)); again.Progress.Nodes["a1"].State != NodeMoving {
		t.Fatalf("judged at the healthy deadline, before the agent could: %+v", again.Progress.Nodes["a1"])
	}
	res = Step(p, "2.0", res.Progress, obs, t0.Add(time.Minute+JudgeGrace))
	if np := res.Progress.Nodes["a1"]; np.State != NodeReverting || res.Progress.State != StateRollingBack {
		t.Fatalf("a1 %+v, rollout %s", np, res.Progress.State)
	}
	if !strings.Contains(res.Notes[0].Reason, "not healthy within 2m0s of its assignment (healthy_deadline 1m0s)") {
		t.Errorf("notes %+v", res.Notes)
	}
}

// What a rollback puts back is the release a node runs, not a broken one it is assigned and
// rolled back from; a node that runs nothing yet goes back to its assignment.
func TestCurrentOf(t *testing.T) {
	n := api.Node{Assigned: []api.Assignment{{App: "hello", Version: "1.1.0"}},
		Apps: []api.NodeApp{{App: "hello", Version: "1.0.0", State: api.AppStateRolledBack, Pending: "1.1.0"}}}
	if v, ok := currentOf(n, "hello"); v != "1.0.0" || !ok {
		t.Errorf("rolled back node: %q %v", v, ok)
	}
	n.Apps = nil
	if v, ok := currentOf(n, "hello"); v != "1.1.0" || !ok {
		t.Errorf("node running nothing yet: %q %v", v, ok)
	}
	if v, ok := currentOf(api.Node{Apps: []api.NodeApp{{App: "hello", Version: "0.9.0"}}}, "hello"); v != "0.9.0" || ok {
		t.Errorf("unassigned node: %q %v", v, ok)
	}
}
