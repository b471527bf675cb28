package rollout

import (
	"bytes"
	"context"
	"encoding/json"
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
}

// decoded is a rollout's plan and progress as the engine last decoded or saved them, with the
// bytes they were read from or written as: a step whose record holds the same bytes skips
// decoding them. At 10,000 nodes they are ~1.6 MB of JSON, and decoding them was the largest
// part of a step.
type decoded struct {
	plan, progress []byte
	p              Plan
	pr             Progress
}

// decode returns rec's plan and progress, from the memo when rec holds what it was made of.
// Neither is changed by a step (Step and Halt work on copies).
func (e *Engine) decode(rec store.RolloutRecord) (Plan, Progress, error) {
	e.mu.Lock()
	m, ok := e.memo[rec.ID]
	e.mu.Unlock()
	if ok && bytes.Equal(m.plan, rec.Plan) && bytes.Equal(m.progress, rec.Progress) {
		return m.p, m.pr, nil
	}
	p, pr, err := decode(rec)
	if err == nil {
		e.remember(rec.ID, decoded{plan: rec.Plan, progress: rec.Progress, p: p, pr: pr})
	}
	return p, pr, err
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

// StepGap is the least time between the starts of two steps the change feed wakes.
const StepGap = 200 * time.Millisecond

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
	busy := false // a rollout is under way: its last step asked to be woken
	for ctx.Err() == nil {
		// Reports come in bursts (a batch of nodes finishing together): while a rollout moves,
		// a step soon after the last one waits out the rest of StepGap, so one step takes in
		// the whole burst, and the agents' reports are not queued behind a step per report.
		if gap := e.clk.Now().Sub(last); busy && gap < StepGap {
			if !clock.Sleep(ctx, e.clk, StepGap-gap) {
				return
			}
		}
		last = e.clk.Now()
		wake, err := e.stepAll(ctx, seen)
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
	var open []store.RolloutRecord
	if err := e.store.Update(ctx, func(tx store.Tx) (err error) {
		open, err = tx.OpenRollouts("")
		return err
	}); err != nil || len(open) == 0 {
		return time.Time{}, err
	}
	byName, err := seen.nodes(ctx, e.store, e.clk.Now())
	if err != nil {
		return time.Time{}, err
	}
	var wake time.Time
	for _, rec := range open {
		w, err := e.step(ctx, rec.ID, byName)
		if err != nil {
			return time.Time{}, err
		}
		if !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake, nil
}

// seen is the engine's copy of the fleet's nodes between steps, of which a step uses the status
// and the app reports. Reading every node costs a step
// the fleet's size (most of a step at 10,000 nodes, and steps come with every report while a
// rollout moves), so after a first whole read it reads again only the nodes named by the events
// the change feed delivered since: every change to a node's status or app report comes with an
// event whose subject is the node. A report that changes nothing an event tells of (the
// processes' pids, say) is seen by the next whole read, every fullRead.
type seen struct {
	mu    sync.Mutex
	dirty map[string]bool     // subjects of events since the last read
	all   map[string]api.Node // nil until the first whole read
	full  time.Time           // when last read whole
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

// nodes returns the fleet's nodes by name, fresh as of the events delivered so far. A nil s
// reads them all.
func (s *seen) nodes(ctx context.Context, st store.Store, now time.Time) (map[string]api.Node, error) {
	if s == nil {
		return readAll(ctx, st)
	}
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = nil
	all, full := s.all, s.full
	s.mu.Unlock()
	if all == nil || !now.Before(full.Add(fullRead)) || len(dirty) > len(all)/2 {
		all, err := readAll(ctx, st)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.all, s.full = all, now
		s.mu.Unlock()
		return all, nil
	}
	if len(dirty) == 0 {
		return all, nil
	}
	names := slices.Collect(maps.Keys(dirty))
	var fresh map[string]api.Node
	if err := st.Update(ctx, func(tx store.Tx) (err error) {
		fresh, err = tx.Nodes(names)
		return err
	}); err != nil {
		s.changedAll(names)
		return nil, err
	}
	// Only the stepping goroutine reads and changes all: no step holds it while this runs.
	for _, name := range names {
		if n, ok := fresh[name]; ok {
			all[name] = n
		} else {
			delete(all, name) // removed, or not a node
		}
	}
	return all, nil
}

// changedAll notes again subjects a failed read did not refresh.
func (s *seen) changedAll(names []string) {
	for _, n := range names {
		s.changed(n)
	}
}

func readAll(ctx context.Context, st store.Store) (map[string]api.Node, error) {
	nodes, err := st.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]api.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	return byName, nil
}

// observe returns what the nodes of p say of app.
func observe(p Plan, app string, nodes map[string]api.Node) map[string]Observed {
	obs := map[string]Observed{}
	for _, w := range p.Waves {
		for _, pn := range w.Nodes {
			n, ok := nodes[pn.Name]
			if !ok {
				continue // removed: down for good
			}
			o := Observed{Up: n.Status == api.StatusUp}
			for _, a := range n.Apps {
				if a.App == app {
					o.Version, o.State, o.Pending, o.Error, o.Attempt = a.Version, a.State, a.Pending, a.Error, a.Attempt
				}
			}
			obs[pn.Name] = o
		}
	}
	return obs
}

// step takes one step of rollout id, in one transaction: it returns the rollout's next wake-up.
func (e *Engine) step(ctx context.Context, id int64, nodes map[string]api.Node) (time.Time, error) {
	ctx = store.WithActor(ctx, store.System)
	var wake time.Time
	err := e.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.Rollout(id)
		if err != nil || !rec.Open {
			return err
		}
		p, pr, err := e.decode(rec)
		if err != nil {
			return err
		}
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
		res := Step(p, rec.Version, pr, observe(p, rec.App, nodes), now)
		if !res.Wake.IsZero() {
			wake = res.Wake
		}
		more, err := e.carryOut(tx, rec, p, res.Actions, now)
		if err != nil {
			return err
		}
		evs = append(evs, more...)
		evs = append(evs, notes(id, p, pr.State, res.Notes, now)...)
		b, err := json.Marshal(res.Progress)
		if err != nil {
			return err
		}
		var next *time.Time
		if !res.Wake.IsZero() {
			next = &res.Wake
		}
		if len(evs) == 0 && bytes.Equal(b, rec.Progress) && sameTime(next, rec.Wake) && rec.Open == res.Progress.Open() {
			return nil // nothing new: write nothing, so the feed stays quiet
		}
		if _, err := saveJSON(tx, rec, res.Progress, b, next, now); err != nil {
			return err
		}
		// Should the transaction not commit, the record keeps other bytes than these, and the
		// next step decodes it afresh.
		e.remember(id, decoded{plan: rec.Plan, progress: b, p: p, pr: res.Progress})
		if len(evs) > 0 {
			_, err = tx.AppendEvents(evs...)
		}
		return err
	})
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
