package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
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
}

// NewEngine returns an engine over st, on clk.
func NewEngine(st store.Store, clk clock.Clock, log *slog.Logger) *Engine {
	return &Engine{store: st, clk: clk, log: log}
}

// stirs reports whether an event may give a rollout something to do.
func stirs(e api.Event) bool {
	switch e.Type {
	case api.EventAppState, api.EventAppInstalled, api.EventAppFailed, api.EventAppUndeploy,
		api.EventNodeUp, api.EventNodeDown, api.EventNodeRevoked, api.EventReleaseWithdrawn,
		api.EventRolloutStarted, api.EventRolloutApproved, api.EventRolloutAcked, api.EventRolloutReported:
		return true
	case api.EventRolloutState:
		return e.Actor != store.System.ID // the engine's own changes need no second look
	}
	return false
}

// Run steps rollouts until ctx ends (the lead is lost or the server stops).
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
	go func() {
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
			for _, ev := range evs {
				if stirs(ev) {
					select {
					case kick <- struct{}{}:
					default:
					}
					break
				}
			}
		}
	}()
	for ctx.Err() == nil {
		wake, err := e.StepAll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Error("rollout engine: step; retrying", "err", err)
			wake = e.clk.Now().Add(time.Second)
		}
		var timer clock.Timer
		var due <-chan time.Time
		if !wake.IsZero() {
			timer = e.clk.NewTimer(max(wake.Sub(e.clk.Now()), 0))
			due = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-kick:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// StepAll steps every open rollout once and returns the earliest wake-up any asks for (zero when
// none).
func (e *Engine) StepAll(ctx context.Context) (time.Time, error) {
	var open []store.RolloutRecord
	if err := e.store.Update(ctx, func(tx store.Tx) (err error) {
		open, err = tx.OpenRollouts("")
		return err
	}); err != nil || len(open) == 0 {
		return time.Time{}, err
	}
	nodes, err := e.store.Nodes(ctx)
	if err != nil {
		return time.Time{}, err
	}
	byName := make(map[string]api.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
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
		p, pr, err := decode(rec)
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
		if _, err := save(tx, rec, res.Progress, next, now); err != nil {
			return err
		}
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
