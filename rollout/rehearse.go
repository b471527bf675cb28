package rollout

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/release"
)

// A rehearsal runs a plan through the real reconciler (Step) against a simulated fleet, in
// simulated time: no clock, no sleep, the time jumping to the next thing that happens. It says
// when each wave would start and end, and where the rollout would halt, in the time it takes
// to compute, and changes nothing.
//
// The simulated fleet: each node runs what it runs today (Target.From). Each node is drawn,
// from the seed and its name alone, to fail the release (its agent rolls back, as a crash at
// start does) with FailRate, and to be down throughout with OfflineRate; the nodes down today
// are down throughout too. A node that is up takes an assignment at once and reports
// InstallTime plus its wave's min_healthy_time later: healthy on the release, or rolled back.
// Putting a node back costs the same; a node that runs what it is told already, or is told to
// drop the app, reports at once. What people decide is taken as granted at once (approvals,
// site acknowledgements) and no site reports a problem in a feedback window; the result lists
// those assumptions (Assumed).

// DefaultInstallTime is a rehearsal's estimate, when it is given none, of how long a node takes
// to download, unpack and start a release before its wave's min_healthy_time runs.
const DefaultInstallTime = 30 * time.Second

// RehearseOptions say how the simulated fleet of a rehearsal behaves.
type RehearseOptions struct {
	// FailRate is the chance that the release fails on a node; OfflineRate the chance that a
	// node is down throughout. Each from 0 to 1.
	FailRate, OfflineRate float64
	// Seed picks the failing and the offline nodes: the same seed, the same rehearsal.
	Seed int64
	// InstallTime is how long a node takes before its min_healthy_time runs; 0 is
	// DefaultInstallTime.
	InstallTime time.Duration
	// Down names nodes down when the rehearsal starts (those down today): they stay down.
	Down []string
	// MaxSteps bounds the reconciler's steps; 0 is plenty for a plan of its size.
	MaxSteps int
}

// Check refuses options a rehearsal cannot take, naming the field.
func (o RehearseOptions) Check() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"fail rate", o.FailRate}, {"offline rate", o.OfflineRate}} {
		if !(r.v >= 0 && r.v <= 1) { // NaN too
			return fmt.Errorf("%s %v is not a chance: want 0 to 1 (0.05 is 5%%)", r.name, r.v)
		}
	}
	if o.InstallTime < 0 || o.InstallTime > release.MaxHealthyDeadline {
		return fmt.Errorf("install time %v is out of bounds: want 0 (the estimate, %v) to %v", o.InstallTime, DefaultInstallTime, release.MaxHealthyDeadline)
	}
	return nil
}

// Rehearse runs plan, moving nodes to version, against a simulated copy of fleet (what each node
// runs: Target.From; a node of the plan missing from fleet is gone, down throughout). It is
// deterministic: the same inputs give the same result. Times are offsets from the start.
func Rehearse(p Plan, version string, fleet []Target, o RehearseOptions) api.RolloutRehearsal {
	if o.InstallTime == 0 {
		o.InstallTime = DefaultInstallTime
	}
	p = quiet(p)
	f := newSimFleet(p, version, fleet, o)
	r := &rehearsal{p: p, waves: make([]api.RehearsedWave, len(p.Waves)), outcome: map[string]string{}, out: api.RolloutRehearsal{
		Seed: o.Seed, FailRate: o.FailRate, OfflineRate: o.OfflineRate, InstallTime: api.Duration(o.InstallTime),
		Failing: f.failing, Offline: f.offline, Skipped: p.Skipped, Left: len(p.Left), Waves: []api.RehearsedWave{}}}
	limit := o.MaxSteps
	if limit <= 0 {
		limit = 8*len(f.nodes) + 64*len(p.Waves) + 256
	}
	start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // any instant: only offsets are reported
	now, pr := start, Begin(p)
	for {
		if r.out.Steps >= limit {
			r.out.Note = fmt.Sprintf("stopped after %d steps, %s into the rollout, still %s: the plan takes more steps than a rehearsal of its size should", r.out.Steps, Duration(now.Sub(start)), pr.State)
			break
		}
		f.settle(now)
		res := Step(p, version, pr, f.observe(), now)
		r.out.Steps++
		pr = res.Progress
		r.record(res.Notes, now.Sub(start))
		for _, a := range res.Actions {
			if a.Kind == ActAssign {
				f.assign(a, now)
			}
		}
		if pr.State != StateRunning && pr.State != StateRollingBack {
			break
		}
		granted, err := r.grant(&pr, res.Actions, now)
		if err != nil {
			r.out.Note = fmt.Sprintf("%s into the rollout: %v", Duration(now.Sub(start)), err)
			break
		}
		if granted {
			continue
		}
		next := f.next()
		if next.IsZero() || !res.Wake.IsZero() && res.Wake.Before(next) {
			next = res.Wake
		}
		if next.IsZero() {
			r.out.Note = fmt.Sprintf("%s into the rollout it rests %s with nothing left to wait for", Duration(now.Sub(start)), pr.State)
			break
		}
		now = next
	}
	r.finish(pr, now.Sub(start))
	return r.out
}

// quiet returns p without reminders and escalations: in a rehearsal every site acknowledges at
// once and none needs reminding, and a reminder every second of a year-long feedback window
// would cost a step each while changing nothing.
func quiet(p Plan) Plan {
	p.Waves = slices.Clone(p.Waves)
	for i := range p.Waves {
		w := &p.Waves[i]
		w.FeedbackRemind = 0
		if w.Acks != nil {
			a := *w.Acks
			a.Remind, a.Escalate = 0, 0
			w.Acks = &a
		}
	}
	return p
}

// rehearsal gathers a rehearsal's result from the steps' notes.
type rehearsal struct {
	p       Plan
	out     api.RolloutRehearsal
	waves   []api.RehearsedWave
	outcome map[string]string // node → its last node note: done, failed or unreachable
	halted  time.Duration
}

func (r *rehearsal) record(ns []Note, at time.Duration) {
	d := api.Duration(at)
	for _, n := range ns {
		switch n.Kind {
		case NoteWaveStarted:
			r.waves[n.Wave].Started = new(d)
		case NoteWaveHealthy:
			r.waves[n.Wave].Healthy = new(d)
			if w := r.p.Waves[n.Wave]; w.FeedbackWindow > 0 {
				r.assume("wave %s gives its sites %s to report: rehearsed with none reporting a problem", w.Name, Duration(w.FeedbackWindow))
			}
		case NoteWaveDone:
			r.waves[n.Wave].Finished = new(d)
		case NoteNodeDone, NoteNodeFailed, NoteUnreachable:
			r.outcome[n.Node] = n.Kind
		case NoteHalted, NoteRollingBack:
			r.out.Halt = &api.RehearsedHalt{Wave: waveName(r.p, n.Wave), At: d, Reason: n.Reason}
			r.halted = at
		}
	}
}

func (r *rehearsal) assume(format string, args ...any) {
	r.out.Assumed = append(r.out.Assumed, fmt.Sprintf(format, args...))
}

// grant gives what people would give for the wave in hand: the approvals it waits for, and the
// acknowledgements of the sites a step just asked. It reports whether it gave any.
func (r *rehearsal) grant(pr *Progress, acts []Action, now time.Time) (bool, error) {
	if pr.State != StateRunning || pr.Wave >= len(r.p.Waves) {
		return false, nil
	}
	i, granted := pr.Wave, false
	if w, pw := pr.Waves[i], r.p.Waves[i]; w.State == WaveApproval {
		for k := len(w.Approvals); k < pw.Approvals; k++ {
			next, err := Approve(r.p, *pr, fmt.Sprintf("rehearsal-approver-%d", k+1))
			if err != nil {
				return false, err
			}
			*pr = next
		}
		r.assume("wave %s waits for %d approval(s) by %s: rehearsed as given at once", pw.Name, pw.Approvals, pw.ApprovalRole)
		granted = true
	}
	for _, a := range acts {
		if a.Kind != ActAckRequest || a.Wave != i {
			continue
		}
		for _, site := range a.Sites {
			next, err := Ack(r.p, *pr, site, "rehearsal", now)
			if err != nil {
				return false, err
			}
			*pr = next
		}
		r.assume("wave %s asks %s to acknowledge within %s: rehearsed as acknowledged at once",
			r.p.Waves[i].Name, sitesNamed(a.Sites), Duration(r.p.Waves[i].Acks.Deadline))
		granted = true
	}
	return granted, nil
}

// sitesNamed says which sites: "1 site (ams)", "7 sites (ams, ber, fra, lis, osl and 2 more)".
func sitesNamed(sites []string) string {
	n := fmt.Sprintf("%d sites", len(sites))
	if len(sites) == 1 {
		n = "1 site"
	}
	more := ""
	if len(sites) > 5 {
		sites, more = sites[:5], fmt.Sprintf(" and %d more", len(sites)-5)
	}
	return n + " (" + strings.Join(sites, ", ") + more + ")"
}

// finish fills in the waves and the verdict from where the rollout rests at end.
func (r *rehearsal) finish(pr Progress, end time.Duration) {
	for i, w := range r.p.Waves {
		rw := r.waves[i]
		rw.Name, rw.Nodes = w.Name, len(w.Nodes)
		for _, n := range w.Nodes {
			switch r.outcome[n.Name] {
			case NoteNodeDone:
				rw.Done++
			case NoteNodeFailed:
				rw.Failed++
			case NoteUnreachable:
				rw.Unreachable++
			}
		}
		r.out.Waves = append(r.out.Waves, rw)
	}
	r.out.Took = api.Duration(end)
	switch pr.State {
	case StateCompleted:
		r.out.Outcome = api.RehearsalCompleted
	case StateHalted:
		r.out.Outcome, r.out.Took = api.RehearsalHalted, api.Duration(r.halted)
	case StateRolledBack:
		r.out.Outcome = api.RehearsalRolledBack
		rb := &api.RehearsedRollback{Took: api.Duration(end - r.halted)}
		for _, np := range pr.Nodes {
			switch np.State {
			case NodeReverted:
				rb.Nodes++
			case NodeRevertFailed:
				rb.Failed++
			}
		}
		r.out.Rollback = rb
	default:
		r.out.Outcome = api.RehearsalUnfinished
	}
}

// simNode is a node of the simulated fleet, as its agent reports it.
type simNode struct {
	name      string
	up, fails bool
	wave      int
	// What the agent reports: Observed's fields.
	version, state, pending string
	// desired is the release it is told to run; due is when its agent is through with it
	// (zero: it has nothing to do).
	desired string
	due     time.Time
}

type simFleet struct {
	p                Plan
	version          string
	install          time.Duration
	nodes            map[string]*simNode
	list             []*simNode // in plan order
	obs              map[string]Observed
	failing, offline int
}

func newSimFleet(p Plan, version string, fleet []Target, o RehearseOptions) *simFleet {
	f := &simFleet{p: p, version: version, install: o.InstallTime, nodes: map[string]*simNode{}, obs: map[string]Observed{}}
	from := map[string]string{}
	for _, t := range fleet {
		from[t.Name] = t.From
	}
	down := map[string]bool{}
	for _, name := range o.Down {
		down[name] = true
	}
	for i, w := range p.Waves {
		for _, pn := range w.Nodes {
			v, ok := from[pn.Name]
			if !ok {
				f.offline++ // gone from the fleet: the engine sees it as down for good
				continue
			}
			fails, offline := draw(o.Seed, pn.Name, o.FailRate, o.OfflineRate)
			fails = fails && v != version // a node that runs the release already installs nothing
			offline = offline || down[pn.Name]
			n := &simNode{name: pn.Name, up: !offline, fails: fails, wave: i, version: v, desired: v}
			if v != "" {
				n.state = api.AppStateRunning
			}
			f.nodes[pn.Name] = n
			f.list = append(f.list, n)
			f.report(n)
			if fails {
				f.failing++
			}
			if offline {
				f.offline++
			}
		}
	}
	return f
}

// draw says whether the release fails on the node and whether the node is down throughout,
// from the seed and the node's name alone: the fate of a node does not hang on the others.
func draw(seed int64, node string, failRate, offlineRate float64) (fails, offline bool) {
	h := fnv.New64a()
	h.Write([]byte(node))
	r := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
	return r.Float64() < failRate, r.Float64() < offlineRate
}

// observe is what the nodes report now. Step only reads it, so it is kept from step to step
// and changed as agents report.
func (f *simFleet) observe() map[string]Observed { return f.obs }

func (f *simFleet) report(n *simNode) {
	f.obs[n.name] = Observed{Up: n.up, Version: n.version, State: n.state, Pending: n.pending}
}

// assign tells the agents of a's nodes their new desired release. One that is down never hears.
func (f *simFleet) assign(a Action, now time.Time) {
	for _, name := range a.Nodes {
		n, ok := f.nodes[name]
		if !ok || !n.up {
			continue
		}
		n.desired = a.Version
		settled := n.pending == "" && (n.version == "" || n.state == api.AppStateRunning)
		switch {
		case a.Version == n.version && settled:
			n.due = time.Time{}
		case a.Version == n.version || a.Version == "":
			n.due = now // nothing to fetch or start
		default:
			n.due = now.Add(f.install + f.p.Waves[n.wave].MinHealthyTime)
		}
	}
}

// next is when the next agent is through with its work; zero when none has work.
func (f *simFleet) next() time.Time {
	var t time.Time
	for _, n := range f.list {
		if !n.due.IsZero() && (t.IsZero() || n.due.Before(t)) {
			t = n.due
		}
	}
	return t
}

// settle lets every agent whose work is due by now report its outcome.
func (f *simFleet) settle(now time.Time) {
	for _, n := range f.list {
		if n.due.IsZero() || n.due.After(now) {
			continue
		}
		n.due = time.Time{}
		switch {
		case n.desired == f.version && n.fails:
			// The agent goes back to what ran before, or to nothing when nothing did.
			n.pending, n.state = f.version, api.AppStateRolledBack
			if n.version == "" {
				n.state = api.AppStateFailed
			}
		case n.desired == "":
			n.version, n.state, n.pending = "", "", ""
		default:
			n.version, n.state, n.pending = n.desired, api.AppStateRunning, ""
		}
		f.report(n)
	}
}

// Rehearse says how a rollout of the request would go on a simulated copy of today's fleet: the
// nodes Plan would take, those down now down throughout, the others failing or going down as
// o draws. It changes nothing.
func (s *Service) Rehearse(ctx context.Context, req Request, o RehearseOptions) (api.RolloutRehearsal, error) {
	if err := o.Check(); err != nil {
		return api.RolloutRehearsal{}, fault.Invalid("%v", err)
	}
	_, name, p, targets, err := s.plan(ctx, req)
	if err != nil {
		return api.RolloutRehearsal{}, err
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return api.RolloutRehearsal{}, err
	}
	o.Down = slices.Clone(o.Down)
	for _, n := range nodes {
		if n.Status != api.StatusUp {
			o.Down = append(o.Down, n.Name)
		}
	}
	out := Rehearse(p, req.Version, targets, o)
	out.Release, out.Policy = req.App+"@"+req.Version, name
	return out, nil
}
