package server

import (
	"context"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/health"
	"github.com/ferryhq/ferry/web"
)

// webHealth answers the web UI's questions about health from the health service.
type webHealth struct {
	h   *health.Service
	clk clock.Clock
}

var _ web.Health = webHealth{}

// SiteHealth is the site's health from its nodes'.
func (w webHealth) SiteHealth(ctx context.Context, _ api.Site, nodes []api.Node) (string, error) {
	if err := w.h.Annotate(ctx, nodes); err != nil {
		return "", err
	}
	healths := make([]string, 0, len(nodes))
	for _, n := range nodes {
		healths = append(healths, n.Health)
	}
	if h := health.SiteHealth(healths); h != api.HealthUnknown {
		return h, nil
	}
	return api.HealthOK, nil // no nodes: nothing wrong to show
}

// NodeHealth is the node's health.
func (w webHealth) NodeHealth(ctx context.Context, n api.Node) (string, error) {
	nodes := []api.Node{n}
	err := w.h.Annotate(ctx, nodes)
	return nodes[0].Health, err
}

// NodeChecks is the latest result of each of the node's checks.
func (w webHealth) NodeChecks(ctx context.Context, node string) ([]web.Check, error) {
	results, err := w.h.Results(ctx)
	if err != nil {
		return nil, err
	}
	var out []web.Check
	for _, r := range results {
		if r.Node == node {
			out = append(out, web.Check{Name: r.Check, State: r.State, Output: r.Output, Time: r.Time, Unit: historyUnit(r.Perf)})
		}
	}
	return out, nil
}

// stateCodes is the unit of a check's history without perfdata: its states' codes.
const stateCodes = "state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)"

// historyUnit is the unit of the values CheckHistory gives for a check whose latest perfdata is
// perf: the first perf value's unit of measure, or its label when it has none (a count).
func historyUnit(perf []api.CheckPerf) string {
	switch {
	case len(perf) == 0:
		return stateCodes
	case perf[0].UOM != "":
		return perf[0].UOM
	}
	return perf[0].Label
}

// CheckHistory is the last day of a node's check: each bucket's first perf value's average, or
// without perfdata its worst state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, as Nagios counts).
func (w webHealth) CheckHistory(ctx context.Context, node, check string) ([]web.Point, error) {
	buckets, err := w.h.History(ctx, node, check, w.clk.Now().Add(-24*time.Hour))
	if err != nil {
		return nil, err
	}
	code := map[string]float64{api.CheckOK: 0, api.CheckWarning: 1, api.CheckCritical: 2, api.CheckUnknown: 3}
	out := make([]web.Point, 0, len(buckets))
	for _, b := range buckets {
		v := code[b.Worst]
		if len(b.Perf) > 0 {
			v = b.Perf[0].Avg
		}
		out = append(out, web.Point{Time: b.Start, Value: v})
	}
	return out, nil
}

// CheckSeries is the fleet's checks by hard state over time: one line per state that is not OK
// (how many node checks stand in it), and the OK ones.
func (w webHealth) CheckSeries(context.Context) ([]web.Series, error) {
	trend := w.h.Trend()
	if !slices.ContainsFunc(trend, func(p health.TrendPoint) bool {
		return p.Counts[api.CheckOK]+p.Counts[api.CheckWarning]+p.Counts[api.CheckCritical]+p.Counts[api.CheckUnknown] > 0
	}) {
		return nil, nil // no checks yet
	}
	var out []web.Series
	// In the plots' colours by line: blue, red, green, amber.
	for _, state := range []string{api.CheckUnknown, api.CheckCritical, api.CheckOK, api.CheckWarning} {
		sr := web.Series{Name: state, Unit: "checks"}
		for _, p := range trend {
			sr.Points = append(sr.Points, web.Point{Time: p.Time, Value: float64(p.Counts[state])})
		}
		out = append(out, sr)
	}
	return out, nil
}
