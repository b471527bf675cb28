package server

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// The server learns of every write from the store's change feed, whoever made it: a handler,
// the sweep, the blob collector or, with several replicas, another server. One loop follows the
// feed and brings the in-memory state up to date: the hub (and through it each agent's stream)
// and the liveness detector. Writers never update them themselves; a handler that must answer
// with the new state visible waits until the loop has applied its events (settle).

// followFeed applies the feed's events after since until ctx ends.
func (s *Server) followFeed(ctx context.Context, since int64) {
	f := store.Watch(s.store, since)
	wait := 100 * time.Millisecond
	for {
		evs, err := f.Next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Error("read the change feed; retrying", "err", err, "retry_in", wait)
			if !s.sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, 10*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		if err := s.applyEvents(ctx, evs); err != nil {
			// The nodes could not be read: read these events again.
			s.log.Error("apply the change feed; retrying", "err", err)
			f = store.Watch(s.store, s.fed.at())
			continue
		}
		s.fed.advance(evs[len(evs)-1].ID)
	}
}

// applyEvents brings the hub and the detector up to date with evs.
func (s *Server) applyEvents(ctx context.Context, evs []api.Event) error {
	s.metrics.events.Add(float64(len(evs)))
	refresh := map[string]bool{}
	everyone, checks := false, false
	for _, e := range evs {
		s.log.Info("event", "id", e.ID, "type", e.Type, "subject", e.Subject, "actor", e.Actor)
		s.probeEngine.Stir(e)
		switch e.Type {
		case api.EventNodeEnrolled:
			refresh[e.Subject] = true
			s.det.Track(e.Subject, false, s.clk.Now())
		case api.EventNodeLabeled:
			// The event holds the node's whole label set and the generation it makes.
			var p api.NodeLabeled
			if e.Decode(&p) != nil || refresh[e.Subject] || !s.hub.relabel(e.Subject, p.Labels, p.Generation) {
				refresh[e.Subject] = true
			}
		case api.EventNodeUp:
			// Marked up here or by another replica: either way, silent only a grace from now.
			s.det.Vouch(e.Subject, s.clk.Now())
		case api.EventNodeDown:
			// So that the node's next heartbeat here, if it comes here, records its return.
			s.det.SetDown(e.Subject, e.Time)
		case api.EventNodeRevoked:
			delete(refresh, e.Subject)
			s.hub.remove(e.Subject)
			s.det.Forget(e.Subject)
			s.health.Forget(e.Subject, "")
		case api.EventReleaseDeployed:
			var p api.ReleaseDeployed
			if e.Decode(&p) != nil {
				everyone = true
			}
			for _, name := range p.Nodes {
				refresh[name] = true
			}
		case api.EventAppUndeploy, api.EventAppControl, api.EventCheckAdded, api.EventCheckRemoved, api.EventSiteLabeled:
			// Each names the nodes whose desired state it changed: their apps, or the checks
			// they are given. After a check change the hub reads the checks again before it
			// puts them.
			checks = checks || e.Type == api.EventCheckAdded || e.Type == api.EventCheckRemoved
			if e.Type == api.EventCheckRemoved {
				s.health.Forget("", e.Subject)
			}
			var p struct {
				Nodes []string `json:"nodes"`
			}
			if e.Decode(&p) != nil {
				everyone = true
			}
			for _, name := range p.Nodes {
				refresh[name] = true
			}
		case api.EventNodeLogsRequested:
			s.passLogsRequest(e)
		case api.EventProbeLinkStarted, api.EventProbeLinkListening, api.EventProbeLinkDone:
			s.passProbeOrder(e)
		case api.EventReleaseWithdrawn:
			// The event counts the nodes whose assignment it dropped; it does not name them.
			everyone = true
		}
	}
	if checks {
		cs, err := s.store.Checks(ctx)
		if err != nil {
			return err
		}
		s.hub.setChecks(cs)
	}
	if !everyone && len(refresh) == 0 {
		return nil
	}
	if everyone {
		nodes, err := s.store.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			s.hub.put(n)
		}
		return nil
	}
	// The named nodes only, however many: a rollout's step names hundreds of a fleet of
	// thousands, and reading every node for it was most of the server's work while one moved.
	nodes, err := s.store.NodesNamed(ctx, slices.Collect(maps.Keys(refresh)))
	if err != nil {
		return err
	}
	for _, n := range nodes {
		s.hub.put(n) // a node not found is gone since: a later event says so
	}
	return nil
}

// fedTo tracks how far the feed has been applied.
type fedTo struct {
	mu       sync.Mutex
	id       int64
	advanced chan struct{} // closed and replaced at each advance
}

func (f *fedTo) at() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id
}

func (f *fedTo) advance(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.id = id
	if f.advanced != nil {
		close(f.advanced)
	}
	f.advanced = make(chan struct{})
}

// settle waits until the feed has applied evs, so that what a handler answers (and what the
// caller does next) sees them; it gives up when ctx ends, since the writes are durable anyway.
func (s *Server) settle(ctx context.Context, evs ...api.Event) {
	var last int64
	for _, e := range evs {
		last = max(last, e.ID)
	}
	if last == 0 || s.serveCtx == nil {
		return
	}
	for {
		s.fed.mu.Lock()
		done, advanced := s.fed.id >= last, s.fed.advanced
		if advanced == nil {
			s.fed.advanced = make(chan struct{})
			advanced = s.fed.advanced
		}
		s.fed.mu.Unlock()
		if done {
			return
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return
		case <-s.serveCtx.Done():
			return
		}
	}
}
