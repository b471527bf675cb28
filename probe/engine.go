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
// replicas never start the same link. The server's change feed stirs it (Stir).
type Engine struct {
	store store.Store
	clk   clock.Clock
	log   *slog.Logger
	kick  chan struct{}
}

// NewEngine returns an engine over st, on clk.
func NewEngine(st store.Store, clk clock.Clock, log *slog.Logger) *Engine {
	return &Engine{store: st, clk: clk, log: log, kick: make(chan struct{}, 1)}
}

// Stir tells the engine of an event from the change feed: one that may give a probe something
// to do (a probe started, a link reported, a node that went down or came back) has the engine
// step soon, if it runs. The engine's own events need no second look.
func (e *Engine) Stir(ev api.Event) {
	switch ev.Type {
	case api.EventProbeRequested, api.EventProbeLinkDone:
		if ev.Actor == store.System.ID {
			return
		}
	case api.EventNodeUp, api.EventNodeDown, api.EventNodeRevoked:
	default:
		return
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run steps the open probes at start, when stirred, and at the earliest deadline of their
// links, until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	for ctx.Err() == nil {
		wake, err := e.StepAll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Error("probe engine: step; retrying", "err", err)
			wake = e.clk.Now().Add(time.Second)
		}
		clock.WaitWake(ctx, e.clk, wake, e.kick)
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
