package rollout

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Observed is what the fleet says of a node of the plan: whether it is up and what its agent
// last reported of the rollout's app.
type Observed struct {
	Up      bool
	Version string // the release that runs, "" when none
	State   string // api.AppState*
	Pending string // the release the agent works towards, or gave up on
	Error   string
	// Attempt is the rollout attempt the agent's report answers (Progress.Attempt, as it came
	// with the assignment): a failure from an earlier attempt says nothing of a retry.
	Attempt int64
}

// Kinds of action a step asks for.
const (
	ActAssign      = "assign"       // make Version the desired release of Nodes ("" : undeploy), on Wave's terms
	ActAckRequest  = "ack_request"  // ask Sites to acknowledge Wave
	ActAckRemind   = "ack_remind"   // remind Sites that have not acknowledged
	ActAckEscalate = "ack_escalate" // tell the contacts of Sites that have not acknowledged
	ActFeedback    = "feedback"     // ask Sites for their feedback on Wave
	ActFeedRemind  = "feedback_remind"
)

// Action is something the engine must do for a step.
type Action struct {
	Kind    string
	Wave    int
	Nodes   []string
	Version string
	Attempt int64 // of an assignment of the release
	Sites   []string
}

// Kinds of note: what happened in a step, for the rollout's events.
const (
	NoteWaveApproval  = "wave_awaiting_approval"
	NoteWaveStarted   = "wave_started"
	NoteWaveHealthy   = "wave_healthy"
	NoteWaveDone      = "wave_done"
	NoteNodeDone      = "node_done"
	NoteNodeFailed    = "node_failed"
	NoteUnreachable   = "node_unreachable"
	NoteSiteMissedAck = "site_missed_ack"
	NoteHalted        = "halted"
	NoteRollingBack   = "rolling_back"
	NoteRolledBack    = "rolled_back"
	NoteCompleted     = "completed"
)

// Note is something that happened in a step.
type Note struct {
	Kind   string
	Wave   int
	Node   string
	Site   string
	Reason string
}

// Result is what a step decided: the progress to store, the actions to take (in the same
// transaction), what happened, and when to step again if nothing else happens first (zero:
// only when something changes).
type Result struct {
	Progress Progress
	Actions  []Action
	Notes    []Note
	Wake     time.Time
}

// Step is the reconciler: from the plan, where the rollout stands, what the nodes report and the
// time, it decides what to do next. It is pure and idempotent: the same inputs always give the
// same result, and a step taken again on its own result asks for nothing more.
func Step(p Plan, version string, pr Progress, obs map[string]Observed, now time.Time) Result {
	s := &stepper{p: p, version: version, pr: pr.Clone(), obs: obs, now: now}
	s.observe()
	switch s.pr.State {
	case StateRunning:
		s.run()
	case StateCompleted:
		s.catchUp(len(p.Waves) - 1)
	case StateRollingBack:
		s.rollBack()
	}
	return Result{Progress: s.pr, Actions: s.actions(), Notes: s.notes, Wake: s.wake}
}

type stepper struct {
	p       Plan
	version string
	pr      Progress
	obs     map[string]Observed
	now     time.Time

	assign map[assignKey][]string // nodes by version and wave, in the order assigned
	order  []assignKey            // in the order first assigned
	other  []Action
	notes  []Note
	wake   time.Time
}

func (s *stepper) note(n Note) { s.notes = append(s.notes, n) }

// at asks for a step at t, if t is later than now and earlier than any other wake-up.
func (s *stepper) at(t time.Time) {
	if t.After(s.now) && (s.wake.IsZero() || t.Before(s.wake)) {
		s.wake = t
	}
}

// assignKey groups a step's assignments: one action per version and wave, since a wave's
// verification times go with its assignments.
type assignKey struct {
	version string
	wave    int
}

func (s *stepper) give(node, version string, wave int) {
	k := assignKey{version, wave}
	if _, ok := s.assign[k]; !ok {
		if s.assign == nil {
			s.assign = map[assignKey][]string{}
		}
		s.order = append(s.order, k)
	}
	s.assign[k] = append(s.assign[k], node)
}

func (s *stepper) actions() []Action {
	var out []Action
	for _, k := range s.order {
		a := Action{Kind: ActAssign, Version: k.version, Wave: k.wave, Nodes: s.assign[k]}
		if k.version == s.version {
			a.Attempt = s.pr.Attempt
		}
		out = append(out, a)
	}
	return append(out, s.other...)
}

func (s *stepper) set(name string, np NodeProgress) { s.pr.Nodes[name] = np }

// nodes calls f for each planned node in plan order: wave by wave, as the policy listed them.
func (s *stepper) nodes(f func(wave int, pn PlanNode, np NodeProgress)) {
	for i, w := range s.p.Waves {
		for _, pn := range w.Nodes {
			f(i, pn, s.pr.Nodes[pn.Name])
		}
	}
}

// JudgeGrace is how long past a wave's healthy_deadline the rollout waits for a node's own
// verdict: the agent's deadline runs from the start of the new processes, after the download and
// the install, and its report takes a moment to arrive.
const JudgeGrace = time.Minute

// judgeAfter is how long after its assignment a node that is neither healthy nor given up on
// counts as failed.
func judgeAfter(w PlanWave) time.Duration { return w.HealthyDeadline + JudgeGrace }

// healthyAt reports whether o says the node runs version and is well.
func healthyAt(o Observed, version string) bool {
	return o.Up && o.Version == version && (o.State == api.AppStateRunning || o.State == api.AppStateStopped)
}

// gaveUp reports whether o says the agent failed to run version.
func gaveUp(o Observed, version string) bool {
	switch o.State {
	case api.AppStateRolledBack, api.AppStateFailed:
		return o.Pending == version || o.Version == version
	case api.AppStateCrashloop:
		return o.Version == version
	}
	return false
}

// backAt reports whether o says the node runs from again, healthy: the app gone when from is "".
func backAt(o Observed, from string) bool {
	if from == "" {
		return o.Up && o.Version == "" && o.Pending == ""
	}
	return healthyAt(o, from)
}

// observe moves nodes on what they report: a moving node that runs the release healthy is done,
// one whose agent gave up on it (or that missed its deadline) failed; an unreachable node that
// is back is taken up again; a reverting node that runs its old release again is reverted.
func (s *stepper) observe() {
	s.nodes(func(i int, pn PlanNode, np NodeProgress) {
		o := s.obs[pn.Name]
		w := s.p.Waves[i]
		switch np.State {
		case NodeMoving:
			switch {
			case healthyAt(o, s.version):
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeDone, Since: s.now, Moved: true})
				s.note(Note{Kind: NoteNodeDone, Wave: i, Node: pn.Name, Site: pn.Site})
			case gaveUp(o, s.version) && o.Attempt >= s.pr.Attempt:
				s.fail(i, pn, reasonOf(o))
			case !s.now.Before(np.Since.Add(judgeAfter(w))):
				if !o.Up {
					s.set(pn.Name, NodeProgress{Wave: i, State: NodeUnreachable, Since: s.now, Moved: true, Reason: "down before it was healthy"})
					s.note(Note{Kind: NoteUnreachable, Wave: i, Node: pn.Name, Site: pn.Site})
					break
				}
				s.fail(i, pn, fmt.Sprintf("not healthy within %s of its assignment (healthy_deadline %s)", judgeAfter(w), w.HealthyDeadline))
			default:
				s.at(np.Since.Add(judgeAfter(w)))
			}
		case NodeUnreachable:
			if !o.Up {
				break
			}
			switch {
			case np.Moved && healthyAt(o, s.version):
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeDone, Since: s.now, Moved: true})
				s.note(Note{Kind: NoteNodeDone, Wave: i, Node: pn.Name, Site: pn.Site})
			case np.Moved && gaveUp(o, s.version) && o.Attempt >= s.pr.Attempt:
				s.fail(i, pn, reasonOf(o))
			case np.Moved:
				// Its agent has the release already: judge it afresh from now.
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeMoving, Since: s.now, Moved: true})
				s.at(s.now.Add(judgeAfter(w)))
			default:
				s.set(pn.Name, NodeProgress{Wave: i, State: NodePending})
			}
		case NodeReverting:
			switch {
			case backAt(o, pn.From):
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeReverted, Since: s.now, Moved: true})
			case !s.now.Before(np.Since.Add(judgeAfter(w))):
				if !o.Up {
					s.set(pn.Name, NodeProgress{Wave: i, State: NodeReverted, Since: s.now, Moved: true, Reason: "down: it goes back when it returns"})
					break
				}
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeRevertFailed, Since: s.now, Moved: true, Reason: fmt.Sprintf("not back on %s within %s", from(pn), judgeAfter(w))})
			default:
				s.at(np.Since.Add(judgeAfter(w)))
			}
		}
	})
}

// reasonOf is why an agent gave up on a release: its error, else its state.
func reasonOf(o Observed) string {
	if o.Error != "" {
		return o.Error
	}
	return o.State
}

func from(pn PlanNode) string {
	if pn.From == "" {
		return "no release"
	}
	return pn.From
}

func (s *stepper) fail(i int, pn PlanNode, reason string) {
	s.set(pn.Name, NodeProgress{Wave: i, State: NodeFailed, Since: s.now, Moved: true, Reason: reason})
	s.note(Note{Kind: NoteNodeFailed, Wave: i, Node: pn.Name, Site: pn.Site, Reason: reason})
}

// run drives a running rollout: halts it past a failure threshold or at a bad report, moves the
// wave in hand through its gates, and starts nodes within the limits.
func (s *stepper) run() {
	for i := 0; i <= s.pr.Wave && i < len(s.p.Waves); i++ {
		if c := s.pr.Counts(s.p, i); c.Failed >= s.p.Waves[i].FailureThreshold {
			s.halt(fmt.Sprintf("wave %s: %d of %d nodes failed (threshold %d)", s.p.Waves[i].Name, c.Failed, c.Nodes, s.p.Waves[i].FailureThreshold))
			return
		}
		for _, site := range slices.Sorted(maps.Keys(s.pr.Waves[i].Reports)) {
			r := s.pr.Waves[i].Reports[site]
			if !r.Good {
				s.halt(fmt.Sprintf("wave %s: site %s reported a problem: %s", s.p.Waves[i].Name, site, r.Text))
				return
			}
		}
	}
	for s.pr.State == StateRunning && s.pr.Wave < len(s.p.Waves) {
		if !s.advance(s.pr.Wave) {
			break
		}
	}
	if s.pr.State == StateRunning && s.pr.Wave >= len(s.p.Waves) {
		s.pr.State = StateCompleted
		s.pr.Wave = len(s.p.Waves) - 1
		s.note(Note{Kind: NoteCompleted, Wave: s.pr.Wave})
		s.catchUp(s.pr.Wave)
	}
}

// advance moves wave i as far as it can go now; it reports whether the wave is done, so the next
// may start in the same step.
func (s *stepper) advance(i int) bool {
	w, pw := &s.pr.Waves[i], s.p.Waves[i]
	if w.State == WavePending {
		if pw.Approvals > 0 {
			w.State = WaveApproval
			s.note(Note{Kind: NoteWaveApproval, Wave: i})
		} else {
			s.startWave(i)
		}
	}
	if w.State == WaveApproval {
		if len(w.Approvals) < pw.Approvals {
			s.catchUp(i - 1)
			return false
		}
		s.startWave(i)
	}
	if w.State == WaveRunning {
		s.acks(i)
		s.catchUp(i)
		if !s.healthy(i) {
			return false
		}
		w.State, w.Healthy = WaveSoaking, s.now
		s.note(Note{Kind: NoteWaveHealthy, Wave: i})
		if pw.FeedbackWindow > 0 {
			w.Reminded = s.now
			s.other = append(s.other, Action{Kind: ActFeedback, Wave: i, Sites: s.sites(i, nil)})
		}
	}
	if w.State == WaveSoaking {
		s.catchUp(i)
		end := w.Healthy.Add(max(pw.Soak, pw.FeedbackWindow))
		if s.now.Before(end) {
			s.at(end)
			s.remindFeedback(i)
			return false
		}
		if !s.settled(i) {
			return false // a straggler moves: the next wave waits for it, within its own limits
		}
		w.State = WaveDone
		s.note(Note{Kind: NoteWaveDone, Wave: i})
		s.pr.Wave++
		return true
	}
	return w.State == WaveDone
}

func (s *stepper) startWave(i int) {
	w, pw := &s.pr.Waves[i], s.p.Waves[i]
	w.State, w.Started = WaveRunning, s.now
	s.note(Note{Kind: NoteWaveStarted, Wave: i})
	if pw.Acks == nil {
		return
	}
	sites := s.sites(i, nil)
	if w.Acks == nil {
		w.Acks = map[string]SiteAck{}
	}
	var ask []string
	for _, site := range sites {
		if _, ok := w.Acks[site]; !ok {
			w.Acks[site] = SiteAck{Requested: s.now}
			ask = append(ask, site)
		}
	}
	if len(ask) > 0 {
		s.other = append(s.other, Action{Kind: ActAckRequest, Wave: i, Sites: ask})
	}
}

// sites returns the sites of wave i's nodes, in plan order, that keep(site) (all when nil).
func (s *stepper) sites(i int, keep func(string) bool) []string {
	var out []string
	for _, n := range s.p.Waves[i].Nodes {
		if !slices.Contains(out, n.Site) && (keep == nil || keep(n.Site)) {
			out = append(out, n.Site)
		}
	}
	return out
}

// acks reminds and escalates sites that have not acknowledged wave i, and leaves out of the wave
// those past the deadline.
func (s *stepper) acks(i int) {
	w, pa := &s.pr.Waves[i], s.p.Waves[i].Acks
	if pa == nil {
		return
	}
	var remind, escalate []string
	for _, site := range s.sites(i, nil) {
		a := w.Acks[site]
		if !a.Acked.IsZero() || a.Missed {
			continue
		}
		if deadline := a.Requested.Add(pa.Deadline); !s.now.Before(deadline) {
			a.Missed = true
			s.note(Note{Kind: NoteSiteMissedAck, Wave: i, Site: site})
			for _, n := range s.p.Waves[i].Nodes {
				if np := s.pr.Nodes[n.Name]; n.Site == site && np.State == NodePending {
					s.set(n.Name, NodeProgress{Wave: i, State: NodeSkipped, Since: s.now, Reason: "site " + site + " did not acknowledge in time"})
				}
			}
			w.Acks[site] = a
			continue
		} else {
			s.at(deadline)
		}
		if pa.Remind > 0 {
			last := a.Requested
			if !a.Reminded.IsZero() {
				last = a.Reminded
			}
			if next := last.Add(pa.Remind); !s.now.Before(next) {
				a.Reminded = s.now
				remind = append(remind, site)
				s.at(s.now.Add(pa.Remind))
			} else {
				s.at(next)
			}
		}
		if pa.Escalate > 0 && !a.Escalated {
			if at := a.Requested.Add(pa.Escalate); !s.now.Before(at) {
				a.Escalated = true
				escalate = append(escalate, site)
			} else {
				s.at(at)
			}
		}
		w.Acks[site] = a
	}
	if len(remind) > 0 {
		s.other = append(s.other, Action{Kind: ActAckRemind, Wave: i, Sites: remind})
	}
	if len(escalate) > 0 {
		s.other = append(s.other, Action{Kind: ActAckEscalate, Wave: i, Sites: escalate})
	}
}

// remindFeedback reminds the sites of wave i that have not reported, every FeedbackRemind.
func (s *stepper) remindFeedback(i int) {
	w, pw := &s.pr.Waves[i], s.p.Waves[i]
	if pw.FeedbackWindow == 0 || pw.FeedbackRemind == 0 || !s.now.Before(w.Healthy.Add(pw.FeedbackWindow)) {
		return
	}
	next := w.Reminded.Add(pw.FeedbackRemind)
	if s.now.Before(next) {
		s.at(next)
		return
	}
	silent := s.sites(i, func(site string) bool { _, ok := w.Reports[site]; return !ok })
	w.Reminded = s.now
	s.at(s.now.Add(pw.FeedbackRemind))
	if len(silent) > 0 {
		s.other = append(s.other, Action{Kind: ActFeedRemind, Wave: i, Sites: silent})
	}
}

// acked reports whether node n of wave i may be touched as far as acknowledgements go.
func (s *stepper) acked(i int, n PlanNode) bool {
	if s.p.Waves[i].Acks == nil {
		return true
	}
	return !s.pr.Waves[i].Acks[n.Site].Acked.IsZero()
}

// unavailable counts the nodes the rollout has between stop and healthy, in all and per site:
// those moving or reverting that are up (one that is down is out of service whatever the
// rollout does).
func (s *stepper) unavailable() (int, map[string]int) {
	total, site := 0, map[string]int{}
	s.nodes(func(_ int, pn PlanNode, np NodeProgress) {
		if (np.State == NodeMoving || np.State == NodeReverting && !np.Quiet) && s.obs[pn.Name].Up {
			total++
			site[pn.Site]++
		}
	})
	return total, site
}

// fits reports whether wave i's limits let one more of site's nodes move.
func fits(pw PlanWave, site string, total int, perSite map[string]int) bool {
	if total >= pw.MaxParallel {
		return false
	}
	limit, ok := pw.MaxUnavailablePerSite[site]
	return !ok || perSite[site] < limit
}

// catchUp starts the pending nodes of waves up to upto, earliest first, within the limits of
// wave upto (the one in hand governs, for the stragglers of earlier waves too): a node already
// on the release is done at once, a node that is down is unreachable.
func (s *stepper) catchUp(upto int) {
	if upto < 0 {
		return
	}
	total, perSite := s.unavailable()
	limits := s.p.Waves[upto]
	for i := 0; i <= upto; i++ {
		pw := s.p.Waves[i]
		for _, pn := range pw.Nodes {
			np := s.pr.Nodes[pn.Name]
			if np.State != NodePending || !s.acked(i, pn) {
				continue
			}
			o := s.obs[pn.Name]
			switch {
			case healthyAt(o, s.version):
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeDone, Since: s.now, Moved: np.Moved})
				s.note(Note{Kind: NoteNodeDone, Wave: i, Node: pn.Name, Site: pn.Site})
			case !o.Up:
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeUnreachable, Since: s.now, Moved: np.Moved, Reason: "down when its turn came"})
				s.note(Note{Kind: NoteUnreachable, Wave: i, Node: pn.Name, Site: pn.Site})
			case fits(limits, pn.Site, total, perSite):
				s.set(pn.Name, NodeProgress{Wave: i, State: NodeMoving, Since: s.now, Moved: true})
				s.give(pn.Name, s.version, i)
				s.at(s.now.Add(judgeAfter(pw)))
				total++
				perSite[pn.Site]++
			}
		}
	}
}

// settled reports whether no node of the waves up to i is pending or moving: a node of an
// earlier wave that came back is taken up, and moves, within the limits of the wave in hand.
func (s *stepper) settled(i int) bool {
	for j := 0; j <= i; j++ {
		for _, pn := range s.p.Waves[j].Nodes {
			if st := s.pr.Nodes[pn.Name].State; st == NodePending || st == NodeMoving {
				return false
			}
		}
	}
	return true
}

// healthy reports whether wave i is through: no node of it, or of an earlier wave, pending or
// moving, and every unreachable one of it past the wave's deadline for it.
func (s *stepper) healthy(i int) bool {
	pw, ok := s.p.Waves[i], s.settled(i)
	for _, pn := range pw.Nodes {
		np := s.pr.Nodes[pn.Name]
		switch np.State {
		case NodePending, NodeMoving:
			ok = false
		case NodeUnreachable:
			if end := np.Since.Add(pw.UnreachableDeadline); s.now.Before(end) {
				s.at(end)
				ok = false
			}
		}
	}
	return ok
}

// halt stops a running rollout at a failure: it rolls back or pauses, as the plan says.
func (s *stepper) halt(reason string) {
	s.pr.Reason = reason
	if s.p.OnFailure == OnFailurePause {
		s.pr.State = StateHalted
		s.note(Note{Kind: NoteHalted, Wave: s.pr.Wave, Reason: reason})
		return
	}
	s.pr.State = StateRollingBack
	s.note(Note{Kind: NoteRollingBack, Wave: s.pr.Wave, Reason: reason})
	s.rollBack()
}

// rollBack puts back every node the rollout moved. Nodes that are not serving the new release
// (failed, still moving, down) go back at once; healthy ones within the strictest limits of the
// plan's waves, so a site keeps serving while its nodes return.
func (s *stepper) rollBack() {
	limits := s.p.strictest()
	back := func(i int, pn PlanNode, quiet bool) {
		s.give(pn.Name, pn.From, i)
		if backAt(s.obs[pn.Name], pn.From) {
			// It never left the old release: it is back as soon as it is told.
			s.set(pn.Name, NodeProgress{Wave: i, State: NodeReverted, Since: s.now, Moved: true})
			return
		}
		s.set(pn.Name, NodeProgress{Wave: i, State: NodeReverting, Since: s.now, Moved: true, Quiet: quiet})
		s.at(s.now.Add(judgeAfter(s.p.Waves[i])))
	}
	s.nodes(func(i int, pn PlanNode, np NodeProgress) {
		if !np.Moved {
			return
		}
		switch np.State {
		case NodeFailed, NodeUnreachable, NodePending:
			back(i, pn, true) // not serving the release
		case NodeDone:
			if !s.obs[pn.Name].Up {
				back(i, pn, true) // down: out of service whatever we do
			}
		case NodeMoving:
			back(i, pn, false) // counted as unavailable already
		}
	})
	total, perSite := s.unavailable()
	s.nodes(func(i int, pn PlanNode, np NodeProgress) {
		if np.Moved && np.State == NodeDone && s.obs[pn.Name].Up && fits(limits, pn.Site, total, perSite) {
			back(i, pn, false)
			total++
			perSite[pn.Site]++
		}
	})
	done := true
	s.nodes(func(_ int, _ PlanNode, np NodeProgress) {
		if np.Moved && np.State != NodeReverted && np.State != NodeRevertFailed {
			done = false
		}
	})
	if done {
		s.pr.State = StateRolledBack
		s.note(Note{Kind: NoteRolledBack, Wave: s.pr.Wave, Reason: s.pr.Reason})
	}
}

// strictest returns the tightest limits of p's waves: the least max_parallel, and for each site
// the least max_unavailable_per_site any wave sets.
func (p Plan) strictest() PlanWave {
	var w PlanWave
	for i, pw := range p.Waves {
		if i == 0 || pw.MaxParallel < w.MaxParallel {
			w.MaxParallel = pw.MaxParallel
		}
		for site, l := range pw.MaxUnavailablePerSite {
			if w.MaxUnavailablePerSite == nil {
				w.MaxUnavailablePerSite = map[string]int{}
			}
			if have, ok := w.MaxUnavailablePerSite[site]; !ok || l < have {
				w.MaxUnavailablePerSite[site] = l
			}
		}
	}
	return w
}
