// Package assign is the service that keeps the desired state of nodes (which release of each app
// a node should run) and takes in what nodes report they run. Its rules are Go here: which
// releases may be assigned, and which reports count as an install or a failure. Each write runs
// in one store transaction (store.Updater) and returns its events, which reach the agents
// through the change feed.
package assign

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/catalog"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/store"
)

// Service keeps desired and reported state.
type Service struct {
	store store.Store
	clk   clock.Clock

	// Reports that come while one is written wait in queue and are written together, in one
	// transaction (a group commit): a batch of nodes finishing a release at once costs one
	// commit, not one each. writing says a caller is writing a batch.
	mu      sync.Mutex
	queue   []*pendingReport
	writing bool
}

// pendingReport is one node's report waiting for its batch.
type pendingReport struct {
	actor store.Actor
	node  string
	apps  []api.NodeApp
	evs   []api.Event
	err   error
	done  chan struct{} // closed once written (or refused)
	lead  chan struct{} // closed when this caller is to write the next batch
}

// New returns the service over st, on clk.
func New(st store.Store, clk clock.Clock) *Service { return &Service{store: st, clk: clk} }

// Assign makes app@version the desired release of each named node that is not revoked. It
// returns the nodes whose desired state changed, in the order given, and one release.deployed
// event naming them when any did; nodes already assigned the release are left alone, so
// repeating a deploy wakes no agent. A withdrawn release cannot be assigned.
func (s *Service) Assign(ctx context.Context, names []string, app, version string) ([]string, api.Event, error) {
	now := s.clk.Now().UTC()
	var changed []string
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if _, err := catalog.Live(tx, app, version, "deploy"); err != nil {
			return err
		}
		done, err := tx.AssignNodes(names, app, version, "", now)
		if err != nil || len(done) == 0 {
			return err
		}
		changed = inOrder(names, done)
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventReleaseDeployed, app+"@"+version, api.ReleaseDeployed{Nodes: changed}))
		return err
	})
	if err != nil {
		return nil, api.Event{}, err
	}
	return changed, ev, nil
}

// Follow makes each named node that is not revoked follow channel for app: its desired release
// is the channel's candidate now, and moves with it (see catalog). It returns the candidate, the
// nodes whose desired state changed, in the order given, and one release.deployed event naming
// them and the channel when any did. A channel that holds no release of the app is refused.
func (s *Service) Follow(ctx context.Context, names []string, app, channel string) (string, []string, api.Event, error) {
	now := s.clk.Now().UTC()
	var changed []string
	var ev api.Event
	var version string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		chans, err := tx.Channels()
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(chans, func(c api.Channel) bool { return c.Name == channel }) {
			return fault.NotFound("channel %q not found", channel)
		}
		if version, err = catalog.Candidate(tx, channel, app); err != nil {
			return err
		}
		if version == "" {
			return fault.Conflict("channel %s holds no release of %s; push or promote one into it first", channel, app)
		}
		done, err := tx.AssignNodes(names, app, version, channel, now)
		if err != nil || len(done) == 0 {
			return err
		}
		changed = inOrder(names, done)
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventReleaseDeployed, app+"@"+version, api.ReleaseDeployed{Nodes: changed, Channel: channel}))
		return err
	})
	if err != nil {
		return "", nil, api.Event{}, err
	}
	return version, changed, ev, nil
}

// Unassign takes app off each named node: its agent stops the app and removes its releases. It
// returns the nodes that had it assigned, in the order given, and one app.undeployed event
// naming them when any did.
func (s *Service) Unassign(ctx context.Context, names []string, app string) ([]string, api.Event, error) {
	now := s.clk.Now().UTC()
	var changed []string
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		done, err := tx.UnassignNodes(names, app)
		if err != nil || len(done) == 0 {
			return err
		}
		changed = inOrder(names, done)
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventAppUndeploy, app, api.AppUndeployed{Nodes: changed}))
		return err
	})
	if err != nil {
		return nil, api.Event{}, err
	}
	return changed, ev, nil
}

// Control records an operator's action (api.AppStop, AppStart, AppRestart) on app on each named
// node that has it assigned, for their agents to carry out. It returns the nodes whose desired
// state changed, in the order given, and one app.controlled event naming them when any did.
func (s *Service) Control(ctx context.Context, names []string, app, action string) ([]string, api.Event, error) {
	if action != api.AppStop && action != api.AppStart && action != api.AppRestart {
		return nil, api.Event{}, fault.Invalid("unknown action %q: want stop, start or restart", action)
	}
	now := s.clk.Now().UTC()
	var changed []string
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		done, err := tx.ControlApp(names, app, action)
		if err != nil || len(done) == 0 {
			return err
		}
		changed = inOrder(names, done)
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventAppControl, app, api.AppControlledEvent{Action: action, Nodes: changed}))
		return err
	})
	if err != nil {
		return nil, api.Event{}, err
	}
	return changed, ev, nil
}

// inOrder returns the names of set in the order of names, each once.
func inOrder(names, set []string) []string {
	in := make(map[string]bool, len(set))
	for _, n := range set {
		in[n] = true
	}
	out := make([]string, 0, len(set))
	for _, n := range names {
		if in[n] {
			out = append(out, n)
			delete(in, n)
		}
	}
	return out
}

// Report stores a node's report of its apps and records what changed: app.installed for each
// app whose installed release changed, app.failed for each that newly failed. A report equal to
// the last one changes nothing. It returns once the report is committed; reports of other
// nodes that come meanwhile share its transaction, each event with its own actor.
func (s *Service) Report(ctx context.Context, node string, apps []api.NodeApp) ([]api.Event, error) {
	if apps == nil {
		apps = []api.NodeApp{}
	}
	r := &pendingReport{actor: store.ActorFrom(ctx), node: node, apps: apps, done: make(chan struct{}), lead: make(chan struct{})}
	s.mu.Lock()
	s.queue = append(s.queue, r)
	leading := !s.writing
	s.writing = true
	s.mu.Unlock()
	if !leading {
		select {
		case <-r.done:
			return r.evs, r.err
		case <-r.lead:
		}
	}
	// This caller writes what has queued up, its own report among it, then hands the next
	// batch to the first report that waits for it.
	s.mu.Lock()
	batch := s.queue
	s.queue = nil
	s.mu.Unlock()
	s.writeReports(context.WithoutCancel(ctx), batch)
	s.mu.Lock()
	if len(s.queue) > 0 {
		close(s.queue[0].lead)
	} else {
		s.writing = false
	}
	s.mu.Unlock()
	return r.evs, r.err
}

// writeReports writes a batch of reports in one transaction; when that fails (a node revoked
// meanwhile, say) each is written on its own, so one bad report fails only itself.
func (s *Service) writeReports(ctx context.Context, batch []*pendingReport) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	now := s.clk.Now().UTC()
	err := s.store.Update(ctx, func(tx store.Tx) error {
		for _, r := range batch {
			evs, err := report(tx, r, now)
			if err != nil {
				return err
			}
			r.evs = evs
		}
		return nil
	})
	if err == nil {
		return
	}
	if len(batch) == 1 {
		batch[0].evs, batch[0].err = nil, err
		return
	}
	for _, r := range batch {
		var evs []api.Event
		r.err = s.store.Update(ctx, func(tx store.Tx) (err error) {
			evs, err = report(tx, r, now)
			return err
		})
		r.evs = evs
		if r.err != nil {
			r.evs = nil
		}
	}
}

// report stores one node's report in tx and appends its events, each with the node's actor.
func report(tx store.Tx, r *pendingReport, now time.Time) ([]api.Event, error) {
	before, err := tx.NodeApps(r.node)
	if err != nil {
		return nil, err
	}
	if sameReport(before, r.apps) {
		return nil, nil
	}
	if err := tx.SetNodeApps(r.node, r.apps); err != nil {
		return nil, err
	}
	t := Transitions(r.node, before, r.apps, now)
	if len(t) == 0 {
		return nil, nil
	}
	return tx.AppendEventsAs(r.actor, t...)
}

// Transitions returns the events a node's new report of its apps makes against its last one:
// app.installed when an app's installed version or content changed, app.failed when an app
// failed anew (another error, or the same for another pending version or retry).
func Transitions(node string, before, after []api.NodeApp, now time.Time) []api.Event {
	old := make(map[string]api.NodeApp, len(before))
	for _, a := range before {
		old[a.App] = a
	}
	var evs []api.Event
	for _, a := range after {
		b := old[a.App]
		// The state first: an app that rolled back says so before the failure that made it, so
		// a follower learns "rolled back" and why from the first event it sees.
		if a.State != "" && a.State != b.State {
			evs = append(evs, api.NewEvent(now, api.EventAppState, node, stateChange(b, a)))
		}
		switch {
		case a.Version != "" && (a.Version != b.Version || a.SHA256 != b.SHA256):
			evs = append(evs, api.NewEvent(now, api.EventAppInstalled, node, api.AppInstalled{App: a.App, Version: a.Version, SHA256: a.SHA256, From: b.Version}))
		case a.Error != "" && (a.Error != b.Error || a.Pending != b.Pending || a.Retry != b.Retry):
			evs = append(evs, api.NewEvent(now, api.EventAppFailed, node, api.AppFailed{App: a.App, Version: a.Pending, Error: a.Error, Retry: a.Retry}))
		}
		if a.Restarted > b.Restarted {
			evs = append(evs, api.NewEvent(now, api.EventAppRestarted, node, api.AppRestarted{App: a.App, Version: a.Version, Restarts: a.Restarted}))
		}
	}
	return evs
}

// stateChange describes an app's move from one reported state to the next: the release it
// concerns is the one that failed when it failed or rolled back, the one on its way while it
// downloads and installs, and the one current links to while it starts and is verified — on a
// rollback, the release it goes back to.
func stateChange(before, after api.NodeApp) api.AppStateChanged {
	c := api.AppStateChanged{App: after.App, Version: after.Version, From: before.State, To: after.State}
	switch after.State {
	case api.AppStateFailed, api.AppStateRolledBack:
		if after.Pending != "" {
			c.Version = after.Pending
		}
		c.Reason = after.Error
	case api.AppStateCrashloop:
		for _, p := range after.Processes {
			if p.State == "crashloop" {
				c.Reason = fmt.Sprintf("process %s keeps exiting (%d restarts)", p.Name, p.Restarts)
				break
			}
		}
	case api.AppStateDownloading, api.AppStateInstalling:
		if after.Pending != "" {
			c.Version = after.Pending
		}
	case api.AppStateStarting, api.AppStateVerifying:
		if c.Version == "" {
			c.Version = after.Pending
		}
	}
	return c
}

// sameReport tells whether two reports say the same, as they are stored (JSON).
func sameReport(a, b []api.NodeApp) bool {
	ja, err := json.Marshal(a)
	if err != nil {
		return false
	}
	jb, err := json.Marshal(b)
	return err == nil && bytes.Equal(ja, jb)
}
