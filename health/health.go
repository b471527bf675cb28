// Package health keeps what Ferry knows of its nodes' health: the operator checks that the
// server sends the nodes it selects, the check results agents report (the latest of each
// node's check, and a bounded, downsampled history), the alerts that hard state changes raise
// and clear, and the health of each node and site drawn from them. It is plain Go: the server
// decodes requests and agent frames and calls it.
package health

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// Config is what a Service needs.
type Config struct {
	Store store.Store
	Clock clock.Clock
	Log   *slog.Logger
	// Allowed says whether node may report check: an operator check in its desired state, or
	// APP/NAME of an app assigned to it (app is APP then). Results of other checks (removed a
	// moment ago, say) are dropped.
	Allowed func(node, check, app string) bool
}

// Service keeps checks, results, history and alerts.
type Service struct {
	store   store.Store
	clk     clock.Clock
	log     *slog.Logger
	allowed func(node, check, app string) bool

	mu     sync.Mutex
	series map[seriesKey]*series
	closed []store.CheckBucket // history buckets that ended since the last flush
	trend  []TrendPoint        // the fleet's checks by hard state, every trendEvery
}

// New returns a Service; Load reads what the store holds before it ingests.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Allowed == nil {
		cfg.Allowed = func(string, string, string) bool { return true }
	}
	return &Service{store: cfg.Store, clk: cfg.Clock, log: cfg.Log, allowed: cfg.Allowed,
		series: map[seriesKey]*series{}}
}

// Load reads the latest results and the open alerts, so that a hard state change is judged
// against the state before a restart.
func (s *Service) Load(ctx context.Context) error {
	results, err := s.store.CheckResults(ctx)
	if err != nil {
		return err
	}
	alerts, err := s.store.Alerts(ctx, false)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range results {
		sr := s.get(seriesKey{r.Node, r.Check})
		sr.latest, sr.have, sr.flapping = r.CheckResult, true, r.Flapping
		if r.Hard {
			sr.hard = r.State
		}
	}
	for _, a := range alerts {
		if sr := s.get(seriesKey{a.Node, a.Check}); !sr.have || !sr.latest.Hard {
			sr.hard = a.State
		}
	}
	return nil
}

// Retention of history: buckets of five minutes for two days, of an hour for thirty days. A
// node's check keeps 1,296 buckets at most: at 10,000 nodes with five checks each, some 65
// million rows, each written once.
var widths = [2]struct{ width, keep time.Duration }{
	{5 * time.Minute, 48 * time.Hour},
	{time.Hour, 30 * 24 * time.Hour},
}

// Prune forgets history past its retention. The leader runs it now and then.
func (s *Service) Prune(ctx context.Context) error {
	now := s.clk.Now()
	for _, w := range widths {
		if _, err := s.store.PruneCheckHistory(ctx, w.width, now.Add(-w.keep).Truncate(w.width)); err != nil {
			return err
		}
	}
	return nil
}

// The rank of a state, worst highest: a node or site takes its worst.
var rank = map[string]int{api.CheckOK: 0, api.CheckUnknown: 1, api.CheckWarning: 2, api.CheckCritical: 3}

func worse(a, b string) string {
	if rank[b] > rank[a] {
		return b
	}
	return a
}

var healthOf = map[string]string{api.CheckOK: api.HealthOK, api.CheckUnknown: api.HealthUnknown,
	api.CheckWarning: api.HealthWarning, api.CheckCritical: api.HealthCritical}

// AppState is the check state an app's state counts as in its node's health: a failed or
// crash-looping app is CRITICAL, one rolled back to its previous release WARNING.
func AppState(state string) string {
	switch state {
	case api.AppStateFailed, api.AppStateCrashloop:
		return api.CheckCritical
	case api.AppStateRolledBack:
		return api.CheckWarning
	}
	return api.CheckOK
}

// NodeHealth is a node's health: unreachable when it is down, else the worst of its checks'
// hard states (hard, by check) and its apps' states.
func NodeHealth(n api.Node, hard map[string]string) string {
	if n.Status == api.StatusDown {
		return api.HealthUnreachable
	}
	w := api.CheckOK
	for _, st := range hard {
		w = worse(w, st)
	}
	for _, a := range n.Apps {
		w = worse(w, AppState(a.State))
	}
	return healthOf[w]
}

// SiteHealth summarises the health of a site's nodes: unknown when it has none, unreachable
// when none is up, else the worst health of its up nodes (an unknown one counting as warning),
// and at least warning while some of its nodes are down.
func SiteHealth(nodes []string) string {
	if len(nodes) == 0 {
		return api.HealthUnknown
	}
	out, down := "", false
	for _, h := range nodes {
		switch h {
		case api.HealthUnreachable, "":
			down = true
			continue
		case api.HealthUnknown:
			h = api.HealthWarning
		}
		if out == "" || siteRank[h] > siteRank[out] {
			out = h
		}
	}
	switch {
	case out == "":
		return api.HealthUnreachable
	case down && out == api.HealthOK:
		return api.HealthWarning
	}
	return out
}

var siteRank = map[string]int{api.HealthOK: 0, api.HealthWarning: 1, api.HealthCritical: 2}

// HardStates returns each node's checks' hard states that are not OK, by node and check: the
// open alerts, which every replica writes at once, under this server's own knowledge of the
// streams it holds. It reads no results, so the web UI and the API can call it for every page:
// a check that flaps on another replica's stream (it raises no alert) counts there alone.
func (s *Service) HardStates(ctx context.Context) (map[string]map[string]string, error) {
	alerts, err := s.store.Alerts(ctx, false)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	set := func(node, check, state string) {
		if out[node] == nil {
			out[node] = map[string]string{}
		}
		out[node][check] = state
	}
	for _, a := range alerts {
		set(a.Node, a.Check, a.State)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sr := range s.series {
		if sr.have {
			set(k.node, k.check, sr.hardState())
		}
	}
	return out, nil
}

// Annotate fills the Health of nodes, which must carry their live status and apps.
func (s *Service) Annotate(ctx context.Context, nodes []api.Node) error {
	hard, err := s.HardStates(ctx)
	if err != nil {
		return err
	}
	for i := range nodes {
		if nodes[i].Status != api.StatusRevoked {
			nodes[i].Health = NodeHealth(nodes[i], hard[nodes[i].Name])
		}
	}
	return nil
}

// AnnotateSites fills the Health of sites from nodes, annotated already.
func AnnotateSites(sites []api.Site, nodes []api.Node) {
	by := map[string][]string{}
	for _, n := range nodes {
		by[n.Site] = append(by[n.Site], n.Health)
	}
	for i := range sites {
		sites[i].Health = SiteHealth(by[sites[i].Name])
	}
}

// Results returns the latest result of every node's checks, by node and check: the store's,
// under this server's own newer ones.
func (s *Service) Results(ctx context.Context) ([]api.NodeCheck, error) {
	stored, err := s.store.CheckResults(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	seen := map[seriesKey]bool{}
	for i, r := range stored {
		k := seriesKey{r.Node, r.Check}
		seen[k] = true
		if sr := s.series[k]; sr != nil && sr.have && sr.latest.Time.After(r.Time) {
			stored[i].CheckResult = sr.latest
		}
	}
	for k, sr := range s.series {
		if sr.have && !seen[k] {
			stored = append(stored, api.NodeCheck{Node: k.node, CheckResult: sr.latest})
		}
	}
	s.mu.Unlock()
	sort.Slice(stored, func(i, j int) bool {
		if stored[i].Node != stored[j].Node {
			return stored[i].Node < stored[j].Node
		}
		return stored[i].Check < stored[j].Check
	})
	return stored, nil
}

// ListChecks lists the operator checks, by name, each with its latest result on each node,
// followed by the manifests' checks that agents report (no selector), by name.
func (s *Service) ListChecks(ctx context.Context) ([]api.CheckListing, error) {
	checks, err := s.store.Checks(ctx)
	if err != nil {
		return nil, err
	}
	results, err := s.Results(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.CheckListing, 0, len(checks))
	idx := map[string]int{}
	for _, c := range checks {
		idx[c.Name] = len(out)
		out = append(out, api.CheckListing{CheckSpec: c, Results: []api.NodeCheck{}})
	}
	var apps []string
	for _, r := range results {
		i, ok := idx[r.Check]
		if !ok {
			if r.App == "" {
				continue // an operator check removed since
			}
			i, idx[r.Check] = len(out), len(out)
			out = append(out, api.CheckListing{CheckSpec: api.CheckSpec{Name: r.Check}, Results: []api.NodeCheck{}})
			apps = append(apps, r.Check)
		}
		out[i].Results = append(out[i].Results, r)
	}
	head := out[:len(checks)]
	tail := out[len(checks):]
	sort.Slice(tail, func(i, j int) bool { return tail[i].Name < tail[j].Name })
	return append(head, tail...), nil
}

// History returns the history of a node's check since a time: buckets of five minutes when since
// is within their two days, else of an hour. The bucket in progress is this server's own when
// it holds the node's stream.
func (s *Service) History(ctx context.Context, node, check string, since time.Time) ([]api.CheckBucket, error) {
	w := 0
	if since.Before(s.clk.Now().Add(-widths[0].keep)) {
		w = 1
	}
	out, err := s.store.CheckHistory(ctx, node, check, widths[w].width, since)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sr := s.series[seriesKey{node, check}]; sr != nil && sr.buckets[w].count > 0 && !sr.buckets[w].start.Before(since) {
		cur := sr.buckets[w].bucket(widths[w].width)
		if n := len(out); n > 0 && out[n-1].Start.Equal(cur.Start) {
			out[n-1] = cur
		} else {
			out = append(out, cur)
		}
	}
	return out, nil
}
