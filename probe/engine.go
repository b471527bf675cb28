package probe

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// Engine steps the open probes: on the leader only, like the rollout engine, so that two
// replicas never start the same link.
type Engine struct {
	store store.Store
	clk   clock.Clock
	log   *slog.Logger
}

// NewEngine returns an engine over st, on clk.
func NewEngine(st store.Store, clk clock.Clock, log *slog.Logger) *Engine {
	return &Engine{store: st, clk: clk, log: log}
}

// stirs reports whether an event may give a probe something to do: a probe started, a link
// reported, a node that went down or came back. The engine's own events need no second look.
func stirs(e api.Event) bool {
	switch e.Type {
	case api.EventProbeRequested, api.EventProbeLinkDone:
		return e.Actor != store.System.ID
	case api.EventNodeUp, api.EventNodeDown, api.EventNodeRevoked:
		return true
	}
	return false
}

// Run steps the open probes at start, whenever the change feed brings an event that stirs
// them, and at the earliest deadline of their links, until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	since, err := e.store.LastEventID(ctx)
	for err != nil {
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("probe engine: read the event log; retrying", "err", err)
		clock.Sleep(ctx, e.clk, time.Second)
		since, err = e.store.LastEventID(ctx)
	}
	kick := make(chan struct{}, 1)
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
				e.log.Warn("probe engine: follow the event log; retrying", "err", err)
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
			e.log.Error("probe engine: step; retrying", "err", err)
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

// StepAll steps every open probe once, all in one transaction, and returns the earliest
// wake-up any asks for (zero when none).
func (e *Engine) StepAll(ctx context.Context) (time.Time, error) {
	ctx = store.WithActor(ctx, store.System)
	var wake time.Time
	err := e.store.Update(ctx, func(tx store.Tx) error {
		open, err := tx.OpenProbes()
		if err != nil {
			return err
		}
		for _, rec := range open {
			d, err := decodeDoc(rec.Doc)
			if err != nil {
				return err
			}
			nodes, err := tx.Nodes(d.Nodes)
			if err != nil {
				return err
			}
			status := map[string]string{}
			for name, n := range nodes {
				status[name] = n.Status
			}
			now := e.clk.Now().UTC()
			evs, w := Step(&d, rec.ID, status, now)
			if !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
				wake = w
			}
			if len(evs) == 0 {
				continue
			}
			rec.Doc, _ = json.Marshal(d)
			rec.State, rec.Open, rec.UpdatedAt = d.state(), d.CompletedAt == nil, now
			if err := tx.UpdateProbe(rec); err != nil {
				return err
			}
			if _, err := tx.AppendEvents(evs...); err != nil {
				return err
			}
		}
		return nil
	})
	return wake, err
}
