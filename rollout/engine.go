package rollout

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// Engine moves open rollouts on. It steps each when the fleet changes (an app's state, a node up
// or down, an operator's change, a withdrawal) and when a rollout's next wake-up comes, and
// carries out what the step decides in the same transaction as the step's progress, so a server
// killed at any point resumes exactly where it was. Run it on the leader only.
type Engine struct {
	store store.Store
	clk   clock.Clock
	log   *slog.Logger

	mu   sync.Mutex
	memo map[int64]decoded // by rollout

	// observed is what each open rollout's nodes say of its app, kept between steps and
	// brought up to date for the nodes read again: only the stepping goroutine uses it.
	observed map[int64]*observation
}

// decoded is a rollout as the engine last read or wrote it, at revision rev: a step of a rollout
// the store still holds at that revision takes it from here instead of reading and decoding it.
// At 10,000 nodes the plan and progress are ~1.6 MB of JSON, and reading and decoding them was
// the largest part of a step.
type decoded struct {
	rev      int64
	rec      store.RolloutRecord // without its documents
	progress []byte              // the rollout's own progress, as stored
	p        Plan
	pr       Progress
}

// observation is what a rollout's nodes say of its app, and the nodes read again since.
type observation struct {
	obs   map[string]Observed
	stale map[string]bool
}

// decode returns rollout id as the store holds it at revision rev, from the memo when it holds
// that revision. Neither plan nor progress is changed by a step (Step and Halt work on copies).
func (e *Engine) decode(tx store.Tx, id, rev int64) (decoded, error) {
	e.mu.Lock()
	m, ok := e.memo[id]
	e.mu.Unlock()
	if ok && m.rev == rev {
		return m, nil
	}
	rec, err := tx.Rollout(id)
	if err != nil {
		return decoded{}, err
	}
	p, pr, err := decode(rec)
	if err != nil {
		return decoded{}, err
	}
	m = decoded{rev: rec.Rev, progress: rec.Progress, p: p, pr: pr}
	rec.Plan, rec.Progress, rec.Nodes = nil, nil, nil
	m.rec = rec
	return m, nil
}

func (e *Engine) remember(id int64, d decoded) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.memo == nil {
		e.memo = map[int64]decoded{}
	}
	e.memo[id] = d
}

// NewEngine returns an engine over st, on clk.
func NewEngine(st store.Store, clk clock.Clock, log *slog.Logger) *Engine {
	return &Engine{store: st, clk: clk, log: log}
}

// stirs reports whether an event may give a rollout something to do.
func stirs(e api.Event) bool {
	switch e.Type {
	case api.EventAppState:
		// An app on its way (installing, verifying…) decides nothing: Step acts on where it
		// arrives. The node is read again at the next step all the same.
		var c api.AppStateChanged
		if e.Decode(&c) == nil && slices.Contains(inProgress, c.To) {
			return false
		}
		return true
	case api.EventAppInstalled, api.EventAppFailed, api.EventAppUndeploy,
		api.EventNodeUp, api.EventNodeDown, api.EventNodeRevoked, api.EventReleaseWithdrawn,
		api.EventRolloutStarted, api.EventRolloutApproved, api.EventRolloutAcked, api.EventRolloutReported:
		return true
	case api.EventRolloutState:
		return e.Actor != store.System.ID // the engine's own changes need no second look
	}
	return false
}

// inProgress are the app states of a release on its way to a node.
var inProgress = []string{api.AppStateDownloading, api.AppStateInstalling, api.AppStateStarting, api.AppStateVerifying}

// The least time between the starts of two steps the change feed wakes, while a rollout moves:
// twice as long as the last step took, within these bounds, so that the engine steps at most
// half the time and the reports that come meanwhile (a batch of nodes finishing together) are
// taken in by one step, not a step each. A step costs what changed since the last (a few
// milliseconds at 10,000 nodes), so a freed slot mostly waits minStepGap at most before the next
// node is given the release.
const (
	minStepGap = 5 * time.Millisecond
	maxStepGap = 200 * time.Millisecond
)

// stepGap is the gap after a step that took took.
func stepGap(took time.Duration) time.Duration { return min(maxStepGap, max(minStepGap, 2*took)) }

// Run steps rollouts until ctx ends (the lead is lost or the server stops). It keeps the nodes it
// observes between steps and reads again only those the change feed names (see seen).
func (e *Engine) Run(ctx context.Context) {
	since, err := e.store.LastEventID(ctx)
	for err != nil {
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("rollout engine: read the event log; retrying", "err", err)
		clock.Sleep(ctx, e.clk, time.Second)
		since, err = e.store.LastEventID(ctx)
	}
	kick := make(chan struct{}, 1)
	seen := &seen{}
	followed := make(chan struct{})
	defer func() { <-followed }() // the follower reads the store: it is done before Run returns
	go func() {
		defer close(followed)
		feed := store.Watch(e.store, since)
		for {
			evs, err := feed.Next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				e.log.Warn("rollout engine: follow the event log; retrying", "err", err)
				clock.Sleep(ctx, e.clk, time.Second)
				continue
			}
			stir := false
			for _, ev := range evs {
				seen.changed(ev.Subject)
				stir = stir || stirs(ev)
			}
			if stir {
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	var last time.Time
	var took time.Duration
	busy := false // a rollout is under way: its last step asked to be woken
	for ctx.Err() == nil {
		// Reports come in bursts (a batch of nodes finishing together): while a rollout moves,
		// a step soon after the last one waits out the rest of the gap, so that one step takes
		// in what came meanwhile.
		if since, gap := e.clk.Now().Sub(last), stepGap(took); busy && since < gap {
			if !clock.Sleep(ctx, e.clk, gap-since) {
				return
			}
		}
		last = e.clk.Now()
		wake, err := e.stepAll(ctx, seen)
		took = e.clk.Now().Sub(last)
		busy = !wake.IsZero()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Error("rollout engine: step; retrying", "err", err)
			wake = e.clk.Now().Add(time.Second)
		}
		clock.WaitWake(ctx, e.clk, wake, kick)
	}
}

// StepAll steps every open rollout once and returns the earliest wake-up any asks for (zero when
// none).
func (e *Engine) StepAll(ctx context.Context) (time.Time, error) { return e.stepAll(ctx, nil) }

// stepAll is StepAll over the nodes as seen keeps them (nil: read every node).
func (e *Engine) stepAll(ctx context.Context, seen *seen) (time.Time, error) {
	open, err := e.store.OpenRolloutIDs(ctx)
	if err != nil || len(open) == 0 {
		clear(e.observed)
		return time.Time{}, err
	}
	byName, fresh, err := seen.nodes(ctx, e.store, e.clk.Now())
	if err != nil {
		return time.Time{}, err
	}
	e.refreshed(open, fresh)
	var wake time.Time
	for _, id := range open {
		w, err := e.step(ctx, id, byName)
		if err != nil {
			return time.Time{}, err
		}
		if !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake, nil
}

// refreshed notes, for the observations of the open rollouts, the nodes read again (nil: every
// node), and forgets those of rollouts no longer open.
func (e *Engine) refreshed(open []int64, fresh []string) {
	if e.observed == nil {
		e.observed = map[int64]*observation{}
	}
	for id, o := range e.observed {
		if fresh == nil || !slices.Contains(open, id) {
			delete(e.observed, id)
			continue
		}
		for _, name := range fresh {
			o.stale[name] = true
		}
	}
}

// observe returns what the nodes of rollout id, of plan p, say of app: from what it kept, with
// the nodes read again since brought up to date.
func (e *Engine) observe(id int64, p Plan, pr Progress, app string, nodes map[string]store.NodeState) map[string]Observed {
	o := e.observed[id]
	if o == nil {
		o = &observation{obs: observe(p, app, nodes), stale: map[string]bool{}}
		if e.observed != nil {
			e.observed[id] = o
		}
		return o.obs
	}
	for name := range o.stale {
		if _, planned := pr.Nodes[name]; !planned {
			continue
		}
		if n, ok := nodes[name]; ok {
			o.obs[name] = observeNode(n, app)
		} else {
			delete(o.obs, name) // removed: down for good
		}
	}
	clear(o.stale)
	return o.obs
}

// seen is the engine's copy of the fleet's nodes' status and app reports between steps (nothing
// else of them: reading whole nodes took the first step of a rollout at 10,000 nodes most of a
// second). Reading every node costs a step the fleet's size (most of a step at 10,000 nodes, and
// steps come with every report while a rollout moves), so after a first whole read it reads
// again only the nodes named by the events
// the change feed delivered since: every change to a node's status or app report comes with an
// event whose subject is the node. A report that changes nothing an event tells of (the
// processes' pids, say) is seen by the next whole read, every fullRead.
type seen struct {
	mu    sync.Mutex
	dirty map[string]bool            // subjects of events since the last read
	all   map[string]store.NodeState // nil until the first whole read
	full  time.Time                  // when last read whole
}

// fullRead is how often seen reads every node all the same.
const fullRead = time.Minute

// changed notes an event's subject: when it names a node, the node is read again.
func (s *seen) changed(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty == nil {
		s.dirty = map[string]bool{}
	}
	s.dirty[subject] = true
}

// nodes returns the fleet's nodes by name, fresh as of the events delivered so far, and the
// names read again since the last call (nil when every node was). A nil s reads them all.
func (s *seen) nodes(ctx context.Context, st store.Store, now time.Time) (map[string]store.NodeState, []string, error) {
	if s == nil {
		all, err := st.NodeStates(ctx, nil)
		return all, nil, err
	}
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = nil
	all, full := s.all, s.full
	s.mu.Unlock()
	if all == nil || !now.Before(full.Add(fullRead)) || len(dirty) > len(all)/2 {
		all, err := st.NodeStates(ctx, nil)
		if err != nil {
			return nil, nil, err
		}
		s.mu.Lock()
		s.all, s.full = all, now
		s.mu.Unlock()
		return all, nil, nil
	}
	if len(dirty) == 0 {
		return all, []string{}, nil
	}
	names := slices.Collect(maps.Keys(dirty))
	fresh, err := st.NodeStates(ctx, names) // a read: it does not wait for the store's writer
	if err != nil {
		s.changedAll(names)
		return nil, nil, err
	}
	// Only the stepping goroutine reads and changes all: no step holds it while this runs.
	for _, name := range names {
		if n, ok := fresh[name]; ok {
			all[name] = n
		} else {
			delete(all, name) // removed, or not a node
		}
	}
	return all, names, nil
}

// changedAll notes again subjects a failed read did not refresh.
func (s *seen) changedAll(names []string) {
	for _, n := range names {
		s.changed(n)
	}
}

// observe returns what the nodes of p say of app.
func observe(p Plan, app string, nodes map[string]store.NodeState) map[string]Observed {
	obs := map[string]Observed{}
	for _, w := range p.Waves {
		for _, pn := range w.Nodes {
			if n, ok := nodes[pn.Name]; ok { // a node removed is down for good
				obs[pn.Name] = observeNode(n, app)
			}
		}
	}
	return obs
}

// observeNode returns what node n says of app.
func observeNode(n store.NodeState, app string) Observed {
	o := Observed{Up: n.Status == api.StatusUp}
	for _, a := range n.Apps {
		if a.App == app {
			o.Version, o.State, o.Pending, o.Error, o.Attempt = a.Version, a.State, a.Pending, a.Error, a.Attempt
		}
	}
	return o
}

// step takes one step of rollout id, in one transaction: it returns the rollout's next wake-up.
// It writes the rollout's own progress and the nodes whose progress changed.
func (e *Engine) step(ctx context.Context, id int64, nodes map[string]store.NodeState) (time.Time, error) {
	ctx = store.WithActor(ctx, store.System)
	var wake time.Time
	var kept decoded // what was written, kept once it is committed
	err := e.store.Update(ctx, func(tx store.Tx) error {
		rev, open, err := tx.RolloutRev(id)
		if err != nil || !open {
			return err
		}
		m, err := e.decode(tx, id, rev)
		if err != nil {
			return err
		}
		rec, p, pr := m.rec, m.p, m.pr
		now := e.clk.Now().UTC()
		subject := api.RolloutSubject(id)
		var evs []api.Event
		if Active(pr.State) {
			if rel, err := tx.Release(rec.App, rec.Version); err == nil && rel.Withdrawn != "" {
				before := pr.State
				pr = Halt(p, pr, "release withdrawn: "+rel.Withdrawn)
				evs = append(evs, api.NewEvent(now, api.EventRolloutState, subject, api.RolloutStateChanged{ID: id, From: before, To: pr.State, Reason: pr.Reason}))
			}
		}
		res := Step(p, rec.Version, pr, e.observe(id, p, pr, rec.App, nodes), now)
		if !res.Wake.IsZero() {
			wake = res.Wake
		}
		more, err := e.carryOut(tx, rec, p, res.Actions, now)
		if err != nil {
			return err
		}
		evs = append(evs, more...)
		evs = append(evs, notes(id, p, pr.State, res.Notes, now)...)
		b, changed, err := encode(m.pr, res.Progress)
		if err != nil {
			return err
		}
		var next *time.Time
		if !res.Wake.IsZero() {
			next = &res.Wake
		}
		if len(evs) == 0 && len(changed) == 0 && bytes.Equal(b, m.progress) && sameTime(next, rec.Wake) && rec.Open == res.Progress.Open() {
			kept = m
			return nil // nothing new: write nothing, so the feed stays quiet
		}
		saved, err := saveEncoded(tx, rec, res.Progress, b, changed, next, now)
		if err != nil {
			return err
		}
		saved.Nodes = nil
		kept = decoded{rev: saved.Rev, rec: saved, progress: b, p: p, pr: res.Progress}
		if len(evs) > 0 {
			_, err = tx.AppendEvents(evs...)
		}
		return err
	})
	if err == nil && kept.rev != 0 {
		// Only once committed: a step that did not commit leaves the store at an older
		// revision, which the next step then reads afresh.
		e.remember(id, kept)
	}
	return wake, err
}

func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

// carryOut does what a step decided: assignments, and the requests to sites as events.
func (e *Engine) carryOut(tx store.Tx, rec store.RolloutRecord, p Plan, acts []Action, now time.Time) ([]api.Event, error) {
	var evs []api.Event
	for _, a := range acts {
		switch a.Kind {
		case ActAssign:
			// The events name the nodes whose desired state changed: the hub wakes their agents.
			if a.Version == "" {
				changed, err := tx.UnassignNodes(a.Nodes, rec.App)
				if err != nil {
					return nil, err
				}
				if len(changed) > 0 {
					evs = append(evs, api.NewEvent(now, api.EventAppUndeploy, rec.App, api.AppUndeployed{Nodes: changed, Rollout: rec.ID}))
				}
				continue
			}
			w := p.Waves[a.Wave]
			terms := store.RolloutTerms{Rollout: rec.ID, Attempt: a.Attempt, MinHealthyTime: w.MinHealthyTime, HealthyDeadline: w.HealthyDeadline}
			changed, err := tx.AssignRollout(a.Nodes, rec.App, a.Version, terms, now)
			if err != nil {
				return nil, err
			}
			if len(changed) > 0 {
				evs = append(evs, api.NewEvent(now, api.EventReleaseDeployed, rec.App+"@"+a.Version, api.ReleaseDeployed{Nodes: changed, Rollout: rec.ID}))
			}
		default:
			n := api.RolloutNotify{ID: rec.ID, Wave: waveName(p, a.Wave), Kind: a.Kind, Sites: a.Sites}
			for _, name := range a.Sites {
				if site, err := tx.Site(name); err == nil && site.Contact != "" {
					n.Contacts = append(n.Contacts, site.Contact)
				}
			}
			evs = append(evs, api.NewEvent(now, api.EventRolloutNotify, api.RolloutSubject(rec.ID), n))
		}
	}
	return evs, nil
}

// notes turns what happened in a step into the rollout's events.
func notes(id int64, p Plan, state string, ns []Note, now time.Time) []api.Event {
	subject := api.RolloutSubject(id)
	var evs []api.Event
	for _, n := range ns {
		wave := waveName(p, n.Wave)
		switch n.Kind {
		case NoteWaveApproval, NoteWaveStarted, NoteWaveHealthy, NoteWaveDone, NoteSiteMissedAck:
			evs = append(evs, api.NewEvent(now, api.EventRolloutWave, subject, api.RolloutWaveChanged{ID: id, Wave: wave,
				State: strings.TrimPrefix(n.Kind, "wave_"), Site: n.Site}))
		case NoteNodeDone, NoteNodeFailed, NoteUnreachable:
			evs = append(evs, api.NewEvent(now, api.EventRolloutNode, subject, api.RolloutNodeChanged{ID: id, Node: n.Node, Site: n.Site,
				Wave: wave, State: strings.TrimPrefix(n.Kind, "node_"), Reason: n.Reason}))
		case NoteHalted, NoteRollingBack, NoteRolledBack, NoteCompleted:
			to := map[string]string{NoteHalted: StateHalted, NoteRollingBack: StateRollingBack, NoteRolledBack: StateRolledBack, NoteCompleted: StateCompleted}[n.Kind]
			evs = append(evs, api.NewEvent(now, api.EventRolloutState, subject, api.RolloutStateChanged{ID: id, From: state, To: to, Reason: n.Reason}))
			state = to
		}
	}
	return evs
}
