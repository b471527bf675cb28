package health

import (
	"cmp"
	"context"
	"slices"

	"github.com/ferryhq/ferry/api"
)

// What the fleet overview (package overview: ferry status, the web UI's map, /metrics) asks of
// health.

// SiteHealth fills in the Health of each site, given with its nodes up and down: unknown when
// it has no nodes, unreachable when none is up, else the worst health of its up nodes (their
// checks' hard states and their apps' states), at least warning while some are down (see
// SiteHealth).
func (s *Service) SiteHealth(ctx context.Context, sites []api.SiteStatus) error {
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return err
	}
	if err := s.Annotate(ctx, nodes); err != nil {
		return err
	}
	by := map[string][]string{}
	for _, n := range nodes {
		if n.Status != api.StatusRevoked {
			by[n.Site] = append(by[n.Site], n.Health)
		}
	}
	for i, st := range sites {
		switch h := SiteHealth(by[st.Name]); {
		case st.Up+st.Down == 0:
			sites[i].Health = api.HealthUnknown
		case st.Up == 0:
			sites[i].Health = api.HealthUnreachable
		case h == api.HealthUnreachable || h == api.HealthUnknown:
			sites[i].Health = api.HealthOK // up by the live count before the store says so
		default:
			sites[i].Health = h
		}
		if st.Up > 0 && st.Down > 0 && sites[i].Health == api.HealthOK {
			sites[i].Health = api.HealthWarning
		}
	}
	return nil
}

// Checks returns how many (node, check) pairs stand in each state and the latest result of
// each pair that is not OK, worst first.
func (s *Service) Checks(ctx context.Context) (map[string]int, []api.CheckState, error) {
	results, err := s.Results(ctx)
	if err != nil {
		return nil, nil, err
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	site := make(map[string]string, len(nodes))
	for _, n := range nodes {
		site[n.Name] = n.Site
	}
	counts := map[string]int{api.CheckOK: 0, api.CheckWarning: 0, api.CheckCritical: 0, api.CheckUnknown: 0}
	var failing []api.CheckState
	for _, r := range results {
		counts[r.State]++
		if r.State != api.CheckOK {
			failing = append(failing, api.CheckState{Node: r.Node, Site: site[r.Node], Check: r.Check, State: r.State, Output: r.Output, Time: r.Time})
		}
	}
	slices.SortStableFunc(failing, func(a, b api.CheckState) int { return cmp.Compare(rank[b.State], rank[a.State]) })
	return counts, failing, nil
}

// OpenAlerts counts the open alerts no one has acknowledged.
func (s *Service) OpenAlerts(ctx context.Context) (int, error) {
	alerts, err := s.store.Alerts(ctx, false)
	n := 0
	for _, a := range alerts {
		if a.AckedBy == "" {
			n++
		}
	}
	return n, err
}
