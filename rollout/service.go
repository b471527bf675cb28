package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/catalog"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Resolver makes the plan of a rollout of rel over targets: the policy the request names (the
// release class's default when it names none) resolved against them. It returns the policy's
// name with the plan.
type Resolver func(rel api.Release, targets []Target) (string, Plan, error)

// Service starts rollouts, shows them and takes operators' changes to them. The engine (Engine)
// moves them on.
type Service struct {
	store store.Store
	clk   clock.Clock
}

// NewService returns the service over st, on clk.
func NewService(st store.Store, clk clock.Clock) *Service { return &Service{store: st, clk: clk} }

// Request is a rollout to start or plan: app@version over the nodes selector selects (every
// node the app is assigned to when it is empty).
type Request struct {
	App, Version, Selector string
	Resolve                Resolver
}

// targets returns the nodes a request takes, with the version each runs or is assigned now.
func (s *Service) targets(ctx context.Context, req Request) ([]Target, error) {
	sel, err := labels.ParseSelector(req.Selector)
	if err != nil {
		return nil, fault.Invalid("%v", err)
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []Target
	for _, n := range nodes {
		if n.Status == api.StatusRevoked {
			continue
		}
		from, assigned := currentOf(n, req.App)
		if req.Selector == "" && !assigned || !sel.Matches(inventory.Labels(n)) {
			continue
		}
		out = append(out, Target{Name: n.Name, Site: n.Site, Labels: inventory.Labels(n), From: from})
	}
	if len(out) == 0 {
		if req.Selector == "" {
			return nil, fault.Invalid("no node is assigned %s: give --selector to choose the nodes", req.App)
		}
		return nil, fault.Invalid("selector %q matches no node", req.Selector)
	}
	return out, nil
}

// currentOf returns the version of app a node runs (else the one it is assigned): what a
// rollback puts back, so a node whose last release rolled back returns to the one it kept
// running, not to the broken one. It also says whether the node is assigned the app.
func currentOf(n api.Node, app string) (string, bool) {
	assigned, ok := "", false
	for _, a := range n.Assigned {
		if a.App == app {
			assigned, ok = a.Version, true
		}
	}
	for _, a := range n.Apps {
		if a.App == app && a.Version != "" {
			return a.Version, ok
		}
	}
	return assigned, ok
}

// plan resolves a request against the fleet.
func (s *Service) plan(ctx context.Context, req Request) (api.Release, string, Plan, []Target, error) {
	rel, err := s.store.Release(ctx, req.App, req.Version)
	if errors.Is(err, store.ErrNotFound) {
		return rel, "", Plan{}, nil, fault.NotFound("release %s@%s not found", req.App, req.Version)
	}
	if err != nil {
		return rel, "", Plan{}, nil, err
	}
	if rel.Withdrawn != "" {
		return rel, "", Plan{}, nil, fault.Conflict("release %s@%s is withdrawn (reason: %s); roll out another version", req.App, req.Version, rel.Withdrawn)
	}
	targets, err := s.targets(ctx, req)
	if err != nil {
		return rel, "", Plan{}, nil, err
	}
	name, p, err := req.Resolve(rel, targets)
	if err != nil {
		return rel, "", Plan{}, nil, err
	}
	return rel, name, p, targets, nil
}

// Plan says what a rollout of the request would do, changing nothing.
func (s *Service) Plan(ctx context.Context, req Request) (api.RolloutPlan, error) {
	_, name, p, targets, err := s.plan(ctx, req)
	if err != nil {
		return api.RolloutPlan{}, err
	}
	from := map[string]string{}
	for _, t := range targets {
		from[t.Name] = t.From
	}
	out := api.RolloutPlan{Release: req.App + "@" + req.Version, Policy: name, Waves: []api.PlanWave{}}
	for _, w := range p.Waves {
		pw := api.PlanWave{Name: w.Name, Nodes: len(w.Nodes), Sites: map[string]int{}, Gates: gates(w)}
		for _, n := range w.Nodes {
			pw.Sites[n.Site]++
			if from[n.Name] != req.Version {
				pw.Change++
			}
		}
		if pw.Change > 0 {
			windows := (pw.Change + w.MaxParallel - 1) / w.MaxParallel
			pw.Estimate = api.Duration(time.Duration(windows) * w.MinHealthyTime)
		}
		pw.Estimate += api.Duration(max(w.Soak, w.FeedbackWindow))
		out.Waves = append(out.Waves, pw)
	}
	return out, nil
}

func gates(w PlanWave) []string {
	var g []string
	if w.Approvals > 0 {
		g = append(g, fmt.Sprintf("%d approval(s) by %s", w.Approvals, w.ApprovalRole))
	}
	if w.Acks != nil {
		g = append(g, fmt.Sprintf("site acknowledgements within %s", w.Acks.Deadline))
	}
	if w.FeedbackWindow > 0 {
		g = append(g, fmt.Sprintf("feedback window %s", w.FeedbackWindow))
	}
	return g
}

// Start starts a rollout of the request. Its nodes may be in no other running or paused rollout
// of the app. The rollout takes over their assignment of the app when its turn comes; the
// rollout.started event names the nodes whose pin or channel it replaces.
func (s *Service) Start(ctx context.Context, req Request) (api.Rollout, api.Event, error) {
	_, name, p, targets, err := s.plan(ctx, req)
	if err != nil {
		return api.Rollout{}, api.Event{}, err
	}
	now := s.clk.Now().UTC()
	pr := Begin(p)
	planJSON, err := json.Marshal(p)
	if err != nil {
		return api.Rollout{}, api.Event{}, err
	}
	prJSON, nodes, err := encode(Progress{}, pr)
	if err != nil {
		return api.Rollout{}, api.Event{}, err
	}
	rec := store.RolloutRecord{App: req.App, Version: req.Version, Policy: name, Plan: planJSON, Progress: prJSON, Nodes: nodes,
		State: pr.State, Open: true, CreatedAt: now, CreatedBy: store.ActorFrom(ctx).ID, UpdatedAt: now}
	var ev api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		if _, err := catalog.Live(tx, req.App, req.Version, "roll out"); err != nil {
			return err
		}
		if err := conflicts(tx, req.App, p); err != nil {
			return err
		}
		id, err := tx.InsertRollout(rec)
		if err != nil {
			return err
		}
		rec.ID = id
		started := api.RolloutStarted{ID: id, Release: req.App + "@" + req.Version, Policy: name, Replaced: replaced(targets, req.Version)}
		for _, w := range p.Waves {
			started.Waves = append(started.Waves, api.WaveNodes{Name: w.Name, Nodes: len(w.Nodes)})
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventRolloutStarted, api.RolloutSubject(id), started))
		return err
	})
	if err != nil {
		return api.Rollout{}, api.Event{}, err
	}
	return View(rec, p, pr), ev, nil
}

// replaced names the targets whose assignment the rollout will take over: those assigned another
// version.
func replaced(targets []Target, version string) []string {
	var out []string
	for _, t := range targets {
		if t.From != "" && t.From != version {
			out = append(out, t.Name)
		}
	}
	return out
}

// conflicts refuses a plan that shares nodes with a running or paused rollout of the app.
func conflicts(tx store.Tx, app string, p Plan) error {
	open, err := tx.OpenRollouts(app)
	if err != nil {
		return err
	}
	var mine []string
	for _, w := range p.Waves {
		for _, n := range w.Nodes {
			mine = append(mine, n.Name)
		}
	}
	for _, r := range open {
		if !Active(r.State) {
			continue
		}
		var other Plan
		if err := json.Unmarshal(r.Plan, &other); err != nil {
			return fmt.Errorf("rollout %d: plan: %w", r.ID, err)
		}
		if err := held(r, other, mine, "pause is not enough; abort it or wait for it to end"); err != nil {
			return err
		}
	}
	return nil
}

// Holding refuses a change of app on nodes that a running or paused rollout of the app holds:
// an operator's deploy or undeploy there would pull the ground from under the rollout.
func (s *Service) Holding(ctx context.Context, app string, names []string) error {
	recs, err := s.store.Rollouts(ctx, app)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !r.Open || !Active(r.State) {
			continue
		}
		var p Plan
		if err := json.Unmarshal(r.Plan, &p); err != nil {
			return fmt.Errorf("rollout %d: plan: %w", r.ID, err)
		}
		if err := held(r, p, names, "abort it, wait for it to end, or leave these nodes out"); err != nil {
			return err
		}
	}
	return nil
}

// held refuses names that rollout r (of plan p) holds, saying what to do.
func held(r store.RolloutRecord, p Plan, names []string, hint string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var shared []string
	for _, w := range p.Waves {
		for _, n := range w.Nodes {
			if want[n.Name] {
				shared = append(shared, n.Name)
			}
		}
	}
	if len(shared) == 0 {
		return nil
	}
	slices.Sort(shared)
	more := ""
	if len(shared) > 5 {
		more, shared = fmt.Sprintf(" and %d more", len(shared)-5), shared[:5]
	}
	return fault.Conflict("rollout %d (%s@%s, %s) holds %s%s: %s", r.ID, r.App, r.Version, r.State, strings.Join(shared, ", "), more, hint)
}

// Get returns one rollout.
func (s *Service) Get(ctx context.Context, id int64) (api.Rollout, error) {
	rec, err := s.store.Rollout(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return api.Rollout{}, fault.NotFound("rollout %d not found", id)
	}
	if err != nil {
		return api.Rollout{}, err
	}
	p, pr, err := decode(rec)
	if err != nil {
		return api.Rollout{}, err
	}
	return View(rec, p, pr), nil
}

// List returns the latest rollouts of app ("" for all), newest first, without their nodes.
func (s *Service) List(ctx context.Context, app string) ([]api.Rollout, error) {
	recs, err := s.store.Rollouts(ctx, app)
	if err != nil {
		return nil, err
	}
	out := []api.Rollout{}
	for _, rec := range recs {
		p, pr, err := decode(rec)
		if err != nil {
			return nil, err
		}
		v := View(rec, p, pr)
		v.Nodes = nil
		out = append(out, v)
	}
	return out, nil
}

func decode(rec store.RolloutRecord) (Plan, Progress, error) {
	var p Plan
	var pr Progress
	if err := json.Unmarshal(rec.Plan, &p); err != nil {
		return p, pr, fmt.Errorf("rollout %d: plan: %w", rec.ID, err)
	}
	if err := json.Unmarshal(rec.Progress, &pr); err != nil {
		return p, pr, fmt.Errorf("rollout %d: progress: %w", rec.ID, err)
	}
	pr.Nodes = make(map[string]NodeProgress, len(rec.Nodes))
	for name, b := range rec.Nodes {
		var np NodeProgress
		if err := json.Unmarshal(b, &np); err != nil {
			return p, pr, fmt.Errorf("rollout %d: progress of node %s: %w", rec.ID, name, err)
		}
		pr.Nodes[name] = np
	}
	return p, pr, nil
}

// encode returns what is stored of next, a rollout's progress that was before: the document of
// the rollout's own progress, and that of each node whose progress differs from before (every
// node's, from an empty before).
func encode(before, next Progress) ([]byte, map[string][]byte, error) {
	b, err := json.Marshal(next)
	if err != nil {
		return nil, nil, err
	}
	nodes := map[string][]byte{}
	for name, np := range next.Nodes {
		if was, ok := before.Nodes[name]; ok && sameNode(was, np) {
			continue
		}
		if nodes[name], err = json.Marshal(np); err != nil {
			return nil, nil, err
		}
	}
	return b, nodes, nil
}

// sameNode reports whether two node progresses say the same.
func sameNode(a, b NodeProgress) bool {
	since := a.Since.Equal(b.Since)
	a.Since, b.Since = time.Time{}, time.Time{}
	return since && a == b
}

// Operators' changes to a rollout (Act).
const (
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionAbort    = "abort"
	ActionRetry    = "retry"
	ActionRollback = "rollback"
	ActionApprove  = "approve"
	ActionAck      = "ack"
	ActionReport   = "report"
)

// Actions lists the operators' changes, for routes and help.
var Actions = []string{ActionPause, ActionResume, ActionAbort, ActionRetry, ActionRollback, ActionApprove, ActionAck, ActionReport}

// MaxReportText bounds a site report's text and a reason.
const MaxReportText = 2000

// Act applies an operator's change to rollout id, in one transaction with its event; the engine
// acts on it at its next step.
func (s *Service) Act(ctx context.Context, id int64, action string, a api.RolloutAction) (api.Rollout, api.Event, error) {
	if len(a.Text) > MaxReportText {
		return api.Rollout{}, api.Event{}, fault.Invalid("text is %d bytes; at most %d", len(a.Text), MaxReportText)
	}
	who := store.ActorFrom(ctx).ID
	now := s.clk.Now().UTC()
	var view api.Rollout
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.Rollout(id)
		if errors.Is(err, store.ErrNotFound) {
			return fault.NotFound("rollout %d not found", id)
		}
		if err != nil {
			return err
		}
		p, pr, err := decode(rec)
		if err != nil {
			return err
		}
		next, typ, payload, err := act(p, pr, id, action, a, who, now)
		if err != nil {
			return err
		}
		if rec, err = save(tx, rec, pr, next, rec.Wake, now); err != nil {
			return err
		}
		view = View(rec, p, next)
		ev, err = store.AppendOne(tx, api.NewEvent(now, typ, api.RolloutSubject(id), payload))
		return err
	})
	return view, ev, err
}

// act applies one change: the new progress, and the event that tells of it.
func act(p Plan, pr Progress, id int64, action string, a api.RolloutAction, who string, now time.Time) (Progress, string, any, error) {
	var next Progress
	var err error
	switch action {
	case ActionPause:
		next, err = Pause(pr)
	case ActionResume:
		next, err = Resume(pr)
	case ActionAbort:
		next, err = Abort(pr, a.Rollback, reasonOr(a.Text, "aborted by "+who))
	case ActionRetry:
		next, err = Retry(pr)
	case ActionRollback:
		next, err = Rollback(pr, reasonOr(a.Text, "rolled back by "+who))
	case ActionApprove:
		if next, err = Approve(p, pr, who); err == nil {
			return next, api.EventRolloutApproved, api.RolloutApproved{ID: id, Wave: waveName(p, pr.Wave)}, nil
		}
	case ActionAck:
		if next, err = Ack(p, pr, a.Site, who, now); err == nil {
			return next, api.EventRolloutAcked, api.RolloutAcked{ID: id, Wave: waveName(p, pr.Wave), Site: a.Site}, nil
		}
	case ActionReport:
		if next, err = Report(p, pr, a.Site, a.Good, a.Text, who, now); err == nil {
			return next, api.EventRolloutReported, api.RolloutReported{ID: id, Wave: waveName(p, reportedWave(pr, next, a.Site)), Site: a.Site, Good: a.Good, Text: strings.TrimSpace(a.Text)}, nil
		}
	default:
		return pr, "", nil, fault.Invalid("unknown rollout action %q: want one of %s", action, strings.Join(Actions, ", "))
	}
	if err != nil {
		return pr, "", nil, err
	}
	return next, api.EventRolloutState, api.RolloutStateChanged{ID: id, From: pr.State, To: next.State, Reason: next.Reason}, nil
}

// reportedWave finds the wave whose reports changed.
func reportedWave(before, after Progress, site string) int {
	for i := range after.Waves {
		if after.Waves[i].Reports[site] != before.Waves[i].Reports[site] {
			return i
		}
	}
	return after.Wave
}

func reasonOr(text, fallback string) string {
	if t := strings.TrimSpace(text); t != "" {
		return t
	}
	return fallback
}

// save writes a rollout's new progress, next, that was before: its state, whether the engine
// still has work, when it wants its next step, and the nodes whose progress changed. It returns
// the record as written, at its new revision, with the nodes it wrote.
func save(tx store.Tx, rec store.RolloutRecord, before, next Progress, wake *time.Time, now time.Time) (store.RolloutRecord, error) {
	b, nodes, err := encode(before, next)
	if err != nil {
		return rec, err
	}
	return saveEncoded(tx, rec, next, b, nodes, wake, now)
}

// saveEncoded is save of pr already encoded.
func saveEncoded(tx store.Tx, rec store.RolloutRecord, pr Progress, b []byte, nodes map[string][]byte, wake *time.Time, now time.Time) (store.RolloutRecord, error) {
	rec.Progress, rec.Nodes, rec.State, rec.Open, rec.Wake, rec.UpdatedAt = b, nodes, pr.State, pr.Open(), wake, now
	rev, err := tx.UpdateRollout(rec)
	rec.Rev = rev
	return rec, err
}

// Open reports whether the engine still has work on a rollout in this state: anything but an
// end, or a completed one with nodes to catch up when they return.
func (pr Progress) Open() bool {
	switch pr.State {
	case StateRolledBack, StateAborted:
		return false
	case StateCompleted:
		for _, np := range pr.Nodes {
			if np.State == NodeUnreachable || np.State == NodeMoving || np.State == NodePending {
				return true
			}
		}
		return false
	}
	return true
}

// View is a rollout as operators see it.
func View(rec store.RolloutRecord, p Plan, pr Progress) api.Rollout {
	v := api.Rollout{ID: rec.ID, Release: rec.App + "@" + rec.Version, App: rec.App, Version: rec.Version, Policy: rec.Policy,
		State: pr.State, Reason: pr.Reason, Wave: waveName(p, pr.Wave), Waves: []api.RolloutWave{}, Attempt: pr.Attempt,
		CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy, UpdatedAt: rec.UpdatedAt, NextStep: rec.Wake}
	for i, w := range p.Waves {
		wp := pr.Waves[i]
		c := pr.Counts(p, i)
		rw := api.RolloutWave{Name: w.Name, State: wp.State, Nodes: c.Nodes, Done: c.Done, Failed: c.Failed, Unreachable: c.Unreachable,
			Moving: c.Moving, Skipped: c.Skipped, Approvals: w.Approvals, Approved: wp.Approvals,
			Started: timePtr(wp.Started), Healthy: timePtr(wp.Healthy)}
		if !wp.Healthy.IsZero() {
			rw.Until = timePtr(wp.Healthy.Add(max(w.Soak, w.FeedbackWindow)))
		}
		for _, site := range slices.Sorted(maps.Keys(wp.Acks)) {
			a := wp.Acks[site]
			rw.Acks = append(rw.Acks, api.SiteAck{Site: site, Acked: timePtr(a.Acked), By: a.By, Missed: a.Missed})
		}
		for _, site := range slices.Sorted(maps.Keys(wp.Reports)) {
			r := wp.Reports[site]
			rw.Reports = append(rw.Reports, api.SiteNote{Site: site, Good: r.Good, Text: r.Text, By: r.By, At: r.At})
		}
		v.Waves = append(v.Waves, rw)
		for _, n := range w.Nodes {
			np := pr.Nodes[n.Name]
			switch np.State {
			case NodePending, NodeDone, NodeReverted:
				continue
			}
			v.Nodes = append(v.Nodes, api.RolloutNode{Name: n.Name, Site: n.Site, Wave: w.Name, State: np.State, Reason: np.Reason, Since: np.Since})
		}
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
