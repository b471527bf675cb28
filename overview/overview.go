// Package overview assembles the fleet at a glance from the store and the services: each site
// with its nodes up and down and its health, the checks by state and the failing ones, the open
// alerts, the open rollouts with each wave's progress, and which app versions nodes run in which
// state. `ferry status`, the web UI's overview and the Prometheus gauges all read the one
// snapshot it keeps, so every replica over a shared store shows the same fleet.
package overview

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/rollout"
	"github.com/ferryhq/ferry/store"
)

// Store is what the overview reads of the store.
type Store interface {
	Sites(ctx context.Context) ([]api.Site, error)
	AppCounts(ctx context.Context) ([]store.AppCount, error)
	// Changed returns a channel closed at the next commit: a snapshot taken after it stays
	// true until it closes.
	Changed() <-chan struct{}
	// LastEventID is the newest event's id: a snapshot taken after reading it holds every
	// change up to that event.
	LastEventID(ctx context.Context) (int64, error)
}

// Rollouts is what the overview asks of the rollout service.
type Rollouts interface {
	Open(ctx context.Context) ([]rollout.OpenRollout, error)
}

// Health is the overview's seam to the health service, which keeps check results, node and
// site health and alerts. ByNodeStatus stands in for it until it is wired: health from the
// nodes' status alone, no checks and no alerts.
type Health interface {
	// SiteHealth fills in the Health of each site, given with its nodes up and down.
	SiteHealth(ctx context.Context, sites []api.SiteStatus) error
	// Checks returns how many (node, check) pairs stand in each state (api.CheckOK, …) and
	// the latest result of each pair that is not OK.
	Checks(ctx context.Context) (counts map[string]int, failing []api.CheckState, err error)
	// OpenAlerts counts the alerts not acknowledged.
	OpenAlerts(ctx context.Context) (int, error)
}

// ByNodeStatus is the Health known from the nodes' status alone: a site is ok when all its
// nodes are up, warning when some are down, unreachable when none is up, and unknown when it
// has none. It knows no checks and no alerts.
type ByNodeStatus struct{}

var _ Health = ByNodeStatus{}

// SiteHealth judges each site by its nodes' status.
func (ByNodeStatus) SiteHealth(_ context.Context, sites []api.SiteStatus) error {
	for i, s := range sites {
		switch {
		case s.Up+s.Down == 0:
			sites[i].Health = api.HealthUnknown
		case s.Up == 0:
			sites[i].Health = api.HealthUnreachable
		case s.Down > 0:
			sites[i].Health = api.HealthWarning
		default:
			sites[i].Health = api.HealthOK
		}
	}
	return nil
}

// Checks knows no checks.
func (ByNodeStatus) Checks(context.Context) (map[string]int, []api.CheckState, error) {
	return map[string]int{}, nil, nil
}

// OpenAlerts knows no alerts.
func (ByNodeStatus) OpenAlerts(context.Context) (int, error) { return 0, nil }

// AppKey is one app at one version in one state, as nodes report it. Version is empty for an
// app not installed yet, State for an agent that reports none.
type AppKey struct{ App, Version, State string }

// Snapshot is the fleet at one moment. It is shared between callers: read it, never change it.
type Snapshot struct {
	Time time.Time
	// Event is the newest event when the snapshot was taken: it holds every change up to it.
	Event int64
	Sites []api.SiteStatus // by name
	// Apps counts the nodes (not revoked) that report each app at each version in each state.
	Apps     map[AppKey]int
	Rollouts []rollout.OpenRollout // oldest first
	Checks   map[string]int        // (node, check) pairs by state
	Failing  []api.CheckState      // the pairs not OK, worst first
	Alerts   int
}

// Service assembles snapshots and keeps the latest.
type Service struct {
	store    Store
	rollouts Rollouts
	health   Health
	clk      clock.Clock

	mu      sync.Mutex // held while a snapshot is taken, so callers together take one
	last    *Snapshot
	changed <-chan struct{} // closed once the store changes after last was taken
}

// New returns the overview over st and the rollout service; health nil means ByNodeStatus.
func New(st Store, rollouts Rollouts, health Health, clk clock.Clock) *Service {
	if health == nil {
		health = ByNodeStatus{}
	}
	return &Service{store: st, rollouts: rollouts, health: health, clk: clk}
}

// Snapshot returns the fleet as the store holds it now, or the latest snapshot when the store
// has not changed since it was taken or it is younger than maxAge. A scrape every few seconds
// of a fleet that changes all the time so costs one reading of the fleet per maxAge.
func (s *Service) Snapshot(ctx context.Context, maxAge time.Duration) (*Snapshot, error) {
	return s.SnapshotSince(ctx, 0, maxAge)
}

// SnapshotSince is Snapshot for a caller that has seen the events up to since: a snapshot older
// than that event is never returned, however young.
func (s *Service) SnapshotSince(ctx context.Context, since int64, maxAge time.Duration) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil && s.last.Event >= since {
		select {
		case <-s.changed:
			if s.clk.Now().Sub(s.last.Time) < maxAge {
				return s.last, nil
			}
		default:
			return s.last, nil
		}
	}
	changed := s.store.Changed() // before the reads, so a commit during them is not missed
	event, err := s.store.LastEventID(ctx)
	if err != nil {
		return nil, err
	}
	snap, err := s.take(ctx)
	if err != nil {
		return nil, err
	}
	snap.Event = event
	s.last, s.changed = snap, changed
	return snap, nil
}

// Status returns the overview as `ferry status` and the web UI show it: as the store holds it
// now (a snapshot reused only while nothing changed).
func (s *Service) Status(ctx context.Context) (api.Status, error) {
	snap, err := s.Snapshot(ctx, 0)
	if err != nil {
		return api.Status{}, err
	}
	st := api.Status{Time: snap.Time, Sites: slices.Clone(snap.Sites), Checks: slices.Clone(snap.Failing), Alerts: snap.Alerts,
		Rollouts: make([]api.Rollout, 0, len(snap.Rollouts))}
	if st.Sites == nil {
		st.Sites = []api.SiteStatus{}
	}
	if st.Checks == nil {
		st.Checks = []api.CheckState{}
	}
	for _, r := range snap.Rollouts {
		st.Rollouts = append(st.Rollouts, r.Rollout)
	}
	return st, nil
}

func (s *Service) take(ctx context.Context) (*Snapshot, error) {
	snap := &Snapshot{Time: s.clk.Now().UTC(), Apps: map[AppKey]int{}}
	sites, err := s.store.Sites(ctx)
	if err != nil {
		return nil, err
	}
	for _, site := range sites {
		snap.Sites = append(snap.Sites, api.SiteStatus{Name: site.Name, Up: site.Nodes[api.StatusUp], Down: site.Nodes[api.StatusDown],
			Tier: site.Tier, Lat: site.Lat, Lon: site.Lon})
	}
	if err := s.health.SiteHealth(ctx, snap.Sites); err != nil {
		return nil, err
	}
	apps, err := s.store.AppCounts(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		snap.Apps[AppKey{a.App, a.Version, a.State}] += a.Nodes
	}
	if snap.Rollouts, err = s.rollouts.Open(ctx); err != nil {
		return nil, err
	}
	if snap.Checks, snap.Failing, err = s.health.Checks(ctx); err != nil {
		return nil, err
	}
	slices.SortStableFunc(snap.Failing, func(a, b api.CheckState) int {
		return cmp.Or(cmp.Compare(severity(b.State), severity(a.State)), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Check, b.Check))
	})
	if snap.Alerts, err = s.health.OpenAlerts(ctx); err != nil {
		return nil, err
	}
	return snap, nil
}

// severity orders check states from OK to CRITICAL, as Nagios ranks them for a host's worst.
func severity(state string) int {
	switch state {
	case api.CheckOK:
		return 0
	case api.CheckWarning:
		return 1
	case api.CheckUnknown:
		return 2
	case api.CheckCritical:
		return 3
	}
	return 2
}
