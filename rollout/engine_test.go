package rollout_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/rollout"
	"github.com/ferryhq/ferry/store"
)

// engineRig is the engine over a real SQLite store, on a fake clock, with a toy fleet whose
// "agents" install what they are assigned (by writing their reports) when asked.
type engineRig struct {
	t     *testing.T
	ctx   context.Context
	st    *store.SQLite
	clk   *clock.Fake
	svc   *rollout.Service
	eng   *rollout.Engine
	nodes []string
}

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func newEngineRig(t *testing.T, sites map[string]int, perSite int) *engineRig {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewFake(start)
	r := &engineRig{t: t, ctx: ctx, st: st, clk: clk, svc: rollout.NewService(st, clk), eng: rollout.NewEngine(st, clk, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, site := range slices.Sorted(func(yield func(string) bool) {
			for s := range sites {
				if !yield(s) {
					return
				}
			}
		}) {
			if err := tx.InsertSite(api.Site{Name: site, Tier: sites[site], Contact: "ops@" + site + ".example", CreatedAt: start}); err != nil {
				return err
			}
			for i := range perSite {
				name := site + "-" + string(rune('1'+i))
				if err := tx.InsertNode(site, store.NodeRecord{Name: name, PublicKey: "key-" + name}, start); err != nil {
					return err
				}
				if err := tx.SetNodeStatus(name, api.StatusUp); err != nil {
					return err
				}
				r.nodes = append(r.nodes, name)
			}
		}
		for _, v := range []string{"1.0.0", "2.0.0"} {
			if err := tx.InsertRelease(api.Release{App: "hello", Version: v, Class: "minor", SHA256: "sum" + v, Size: 1, CreatedAt: start, Manifest: map[string]any{}}); err != nil {
				return err
			}
		}
		_, err := tx.AssignNodes(r.nodes, "hello", "1.0.0", "", start)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r.agents()
	return r
}

// agents has every node that is up run what it is assigned, healthy.
func (r *engineRig) agents() {
	r.t.Helper()
	nodes, err := r.st.Nodes(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	err = r.st.Update(r.ctx, func(tx store.Tx) error {
		for _, n := range nodes {
			if n.Status != api.StatusUp {
				continue
			}
			var apps []api.NodeApp
			for _, a := range n.Assigned {
				apps = append(apps, api.NodeApp{App: a.App, Version: a.Version, State: api.AppStateRunning})
			}
			if err := tx.SetNodeApps(n.Name, apps); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// settle steps the engine and lets the agents act until nothing changes; it returns the next
// wake-up the rollouts ask for.
func (r *engineRig) settle() time.Time {
	r.t.Helper()
	for range 50 {
		before, _ := r.st.LastEventID(r.ctx)
		wake, err := r.eng.StepAll(r.ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		r.agents()
		if after, _ := r.st.LastEventID(r.ctx); after == before {
			return wake
		}
	}
	r.t.Fatal("the engine never settled")
	return time.Time{}
}

func (r *engineRig) status(node, status string) {
	r.t.Helper()
	if err := r.st.Update(r.ctx, func(tx store.Tx) error { return tx.SetNodeStatus(node, status) }); err != nil {
		r.t.Fatal(err)
	}
}

func (r *engineRig) get(id int64) api.Rollout {
	r.t.Helper()
	ro, err := r.svc.Get(r.ctx, id)
	if err != nil {
		r.t.Fatal(err)
	}
	return ro
}

// deployed counts, per node, the assignments of hello@version the log records.
func (r *engineRig) deployed(version string) map[string]int {
	r.t.Helper()
	evs, err := r.st.Events(r.ctx, 0, 100000)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs {
		var d api.ReleaseDeployed
		if e.Type == api.EventReleaseDeployed && e.Subject == "hello@"+version && e.Decode(&d) == nil {
			for _, n := range d.Nodes {
				out[n]++
			}
		}
	}
	return out
}

func builtin(name string) rollout.Resolver {
	return func(rel api.Release, targets []rollout.Target) (string, rollout.Plan, error) {
		p, err := rollout.Builtin(name)
		if err != nil {
			return "", rollout.Plan{}, err
		}
		plan, err := p.Resolve(targets, rollout.Defaults{})
		return p.Name, plan, err
	}
}

// The built-in minor policy over a real store and the engine on a fake clock: the tier-1 pilot
// soaks seven days to the second, a node that is down when its turn comes is unreachable and the
// wave completes without it after its deadline, it is caught up when it returns, an engine
// started afresh mid-soak (a server killed and restarted) resumes without moving any node
// again, and every node is moved exactly once.
func TestEngineMinorPolicy(t *testing.T) {
	r := newEngineRig(t, map[string]int{"cern": 1, "lip": 2, "ral": 2}, 3)
	ro, _, err := r.svc.Start(store.WithActor(r.ctx, store.Actor{ID: "token:op"}), rollout.Request{App: "hello", Version: "2.0.0", Resolve: builtin("minor")})
	if err != nil {
		t.Fatal(err)
	}
	if ro.Policy != "minor" || len(ro.Waves) != 3 || ro.Waves[0].Name != "pilot" || ro.Waves[0].Nodes != 3 {
		t.Fatalf("started %+v", ro)
	}
	wake := r.settle()
	ro = r.get(ro.ID)
	if ro.Waves[0].State != rollout.WaveSoaking || ro.Waves[0].Done != 3 || ro.Waves[1].State != rollout.WavePending {
		t.Fatalf("after the pilot: %+v", ro.Waves)
	}
	if !wake.Equal(start.Add(7 * 24 * time.Hour)) {
		t.Fatalf("the engine wakes at %s, want the end of the 7-day soak", wake)
	}
	for _, n := range []string{"lip-1", "ral-1"} {
		if d := r.deployed("2.0.0")[n]; d != 0 {
			t.Fatalf("%s moved during the pilot's soak", n)
		}
	}

	// A server killed mid-soak: a new engine over the same store moves nothing again.
	before, _ := r.st.LastEventID(r.ctx)
	r.eng = rollout.NewEngine(r.st, r.clk, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.clk.Advance(7*24*time.Hour - time.Second)
	if w := r.settle(); !w.Equal(wake) {
		t.Fatalf("after the restart the engine wakes at %s, want %s", w, wake)
	}
	if after, _ := r.st.LastEventID(r.ctx); after != before {
		t.Fatalf("a restarted engine wrote %d events a second before the soak ended", after-before)
	}

	// One node is down when its turn comes.
	r.status("ral-2", api.StatusDown)
	r.clk.Advance(time.Second)
	for range 20 {
		wake = r.settle()
		ro = r.get(ro.ID)
		if ro.State != rollout.StateRunning || wake.IsZero() {
			break
		}
		r.clk.Advance(wake.Sub(r.clk.Now()))
	}
	if ro.State != rollout.StateCompleted {
		t.Fatalf("rollout %s (%s), waves %+v", ro.State, ro.Reason, ro.Waves)
	}
	var unreachable []string
	for _, n := range ro.Nodes {
		if n.State == rollout.NodeUnreachable {
			unreachable = append(unreachable, n.Name)
		}
	}
	if !slices.Equal(unreachable, []string{"ral-2"}) {
		t.Fatalf("unreachable %v, want ral-2: %+v", unreachable, ro.Nodes)
	}
	// It returns: it is caught up, and the rollout has nothing left to do.
	r.status("ral-2", api.StatusUp)
	r.settle()
	ro = r.get(ro.ID)
	if len(ro.Nodes) != 0 {
		t.Fatalf("after ral-2 returned: %+v", ro.Nodes)
	}
	deployed := r.deployed("2.0.0")
	for _, n := range r.nodes {
		if deployed[n] != 1 {
			t.Errorf("%s was assigned 2.0.0 %d times", n, deployed[n])
		}
	}
	recs, err := r.st.Rollouts(r.ctx, "hello")
	if err != nil || len(recs) != 1 || recs[0].Open {
		t.Fatalf("the finished rollout is still open: %+v %v", recs, err)
	}
}

// A release withdrawn under a running rollout halts it, and the policy (rollback) puts back what
// it moved; the rollout's notifications name the sites and their contacts.
func TestEngineWithdrawalAndNotifications(t *testing.T) {
	r := newEngineRig(t, map[string]int{"cern": 1, "lip": 2}, 2)
	resolve := func(rel api.Release, targets []rollout.Target) (string, rollout.Plan, error) {
		p, err := rollout.ParsePolicy("acks.yaml", []byte(`name: acks
waves:
  - {name: pilot, selector: "site=cern", acks: {deadline: 2d, remind: 1d}, soak: 1d}
  - {name: rest}
`))
		if err != nil {
			return "", rollout.Plan{}, err
		}
		plan, err := p.Resolve(targets, rollout.Defaults{})
		return p.Name, plan, err
	}
	ro, _, err := r.svc.Start(r.ctx, rollout.Request{App: "hello", Version: "2.0.0", Resolve: resolve})
	if err != nil {
		t.Fatal(err)
	}
	r.settle()
	evs, _ := r.st.Events(r.ctx, 0, 1000)
	var asked api.RolloutNotify
	for _, e := range evs {
		if e.Type == api.EventRolloutNotify {
			e.Decode(&asked)
		}
	}
	if asked.Kind != rollout.ActAckRequest || !slices.Equal(asked.Sites, []string{"cern"}) || !slices.Equal(asked.Contacts, []string{"ops@cern.example"}) {
		t.Fatalf("ack request %+v", asked)
	}
	if _, _, err := r.svc.Act(r.ctx, ro.ID, rollout.ActionAck, api.RolloutAction{Site: "cern"}); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if ro = r.get(ro.ID); ro.Waves[0].Done != 2 {
		t.Fatalf("after the ack: %+v", ro.Waves[0])
	}
	if err := r.st.Update(r.ctx, func(tx store.Tx) error {
		_, _, err := tx.WithdrawRelease("hello", "2.0.0", "corrupts data", r.clk.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r.settle()
	ro = r.get(ro.ID)
	if ro.State != rollout.StateRolledBack || ro.Reason != "release withdrawn: corrupts data" {
		t.Fatalf("after the withdrawal: %s %q", ro.State, ro.Reason)
	}
	nodes, _ := r.st.Nodes(r.ctx)
	for _, n := range nodes {
		if len(n.Apps) != 1 || n.Apps[0].Version != "1.0.0" {
			t.Errorf("%s runs %+v", n.Name, n.Apps)
		}
	}
	if d := r.deployed("2.0.0"); d["lip-1"] != 0 || d["lip-2"] != 0 {
		t.Errorf("the rest wave moved: %v", d)
	}
}

// notifies returns the rollout.notify events after since, as kind:sites.
func (r *engineRig) notifies(since int64) []string {
	r.t.Helper()
	evs, err := r.st.Events(r.ctx, since, 10000)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		var n api.RolloutNotify
		if e.Type == api.EventRolloutNotify && e.Decode(&n) == nil {
			out = append(out, n.Kind+":"+strings.Join(n.Sites, ","))
		}
	}
	return out
}

func (r *engineRig) act(id int64, who, action string, a api.RolloutAction) {
	r.t.Helper()
	if _, _, err := r.svc.Act(store.WithActor(r.ctx, store.Actor{ID: who, Role: "admin"}), id, action, a); err != nil {
		r.t.Fatalf("%s: %v", action, err)
	}
}

// The built-in major policy end to end on the fake clock: the pilot waits for an approval, asks
// its site to acknowledge, reminds the site daily and escalates after two days, then runs its
// 14-day feedback window with a reminder every three days; the next wave waits for its own
// approval; the rollout completes, and nothing moved before its gate opened.
func TestEngineMajorPolicy(t *testing.T) {
	r := newEngineRig(t, map[string]int{"cern": 1, "lip": 2, "ral": 2}, 2)
	ro, _, err := r.svc.Start(r.ctx, rollout.Request{App: "hello", Version: "2.0.0", Resolve: builtin("major")})
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	r.settle()
	if ro = r.get(ro.ID); ro.Waves[0].State != rollout.WaveApproval || len(r.deployed("2.0.0")) != 0 {
		t.Fatalf("before the approval: %+v, deployed %v", ro.Waves[0], r.deployed("2.0.0"))
	}
	r.act(ro.ID, "token:alice", rollout.ActionApprove, api.RolloutAction{})
	r.settle()
	if got := r.notifies(0); !slices.Equal(got, []string{"ack_request:cern"}) {
		t.Fatalf("notifications %v", got)
	}
	if len(r.deployed("2.0.0")) != 0 {
		t.Fatal("a node moved before its site acknowledged")
	}
	// A day: a reminder; two days: another, and the escalation to the site's contacts.
	r.clk.Advance(day)
	r.settle()
	r.clk.Advance(day)
	r.settle()
	if got := r.notifies(0); !slices.Equal(got, []string{"ack_request:cern", "ack_remind:cern", "ack_remind:cern", "ack_escalate:cern"}) {
		t.Fatalf("notifications %v", got)
	}
	r.act(ro.ID, "token:cern-ops", rollout.ActionAck, api.RolloutAction{Site: "cern"})
	healthy := r.clk.Now()
	wake := r.settle()
	if ro = r.get(ro.ID); ro.Waves[0].State != rollout.WaveSoaking || ro.Waves[0].Done != 2 {
		t.Fatalf("after the ack: %+v", ro.Waves[0])
	}
	if want := healthy.Add(3 * day); !wake.Equal(want) {
		t.Fatalf("wakes at %s, want the first feedback reminder at %s", wake, want)
	}
	since, _ := r.st.LastEventID(r.ctx)
	for r.clk.Now().Before(healthy.Add(14 * day)) {
		r.clk.Advance(wake.Sub(r.clk.Now()))
		wake = r.settle()
		if r.get(ro.ID).Waves[1].State != rollout.WavePending {
			break
		}
	}
	if got := r.notifies(since); len(got) != 4 || got[0] != "feedback_remind:cern" {
		t.Fatalf("feedback reminders in 14 days: %v", got)
	}
	ro = r.get(ro.ID)
	if ro.Waves[0].State != rollout.WaveDone || ro.Waves[1].State != rollout.WaveApproval || r.clk.Now().Before(healthy.Add(14*day)) {
		t.Fatalf("at %s: %+v", r.clk.Now().Sub(healthy), ro.Waves)
	}
	r.act(ro.ID, "token:alice", rollout.ActionApprove, api.RolloutAction{})
	for range 10 {
		wake = r.settle()
		if ro = r.get(ro.ID); ro.State != rollout.StateRunning || wake.IsZero() {
			break
		}
		r.clk.Advance(wake.Sub(r.clk.Now()))
	}
	if ro.State != rollout.StateCompleted {
		t.Fatalf("rollout %s: %+v", ro.State, ro.Waves)
	}
	for _, n := range r.nodes {
		if r.deployed("2.0.0")[n] != 1 {
			t.Errorf("%s moved %d times", n, r.deployed("2.0.0")[n])
		}
	}
}
