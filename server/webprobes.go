package server

import (
	"context"
	"math"
	"slices"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/probe"
	"github.com/ferryhq/ferry/web"
)

// webProbes shows the mesh probes on the statistics page: each completed probe's mean
// throughput and round trip over time, and the latest completed probe's matrix.
type webProbes struct{ probes *probe.Service }

var _ web.Probes = webProbes{}

// maxProbeSeries bounds how many probes the series read, each a read of its pairs.
const maxProbeSeries = 30

// ProbeSeries implements web.Probes: the mean Mbit/s and mean round trip of the measured pairs
// of each completed probe, oldest first.
func (w webProbes) ProbeSeries(ctx context.Context) ([]web.Series, error) {
	list, err := w.completed(ctx, maxProbeSeries)
	if err != nil {
		return nil, err
	}
	mbps := web.Series{Name: "mean throughput", Unit: "Mbit/s"}
	rtt := web.Series{Name: "mean round trip", Unit: "ms"}
	for _, p := range slices.Backward(list) {
		var sumMbps, sumRTT float64
		n := 0
		for _, pr := range p.Pairs {
			if pr.Error == "" && pr.Mbps > 0 {
				sumMbps += pr.Mbps
				sumRTT += pr.RTTms.Avg
				n++
			}
		}
		if n == 0 {
			continue
		}
		at := p.CreatedAt
		if p.CompletedAt != nil {
			at = *p.CompletedAt
		}
		mbps.Points = append(mbps.Points, web.Point{Time: at, Value: sumMbps / float64(n)})
		rtt.Points = append(rtt.Points, web.Point{Time: at, Value: sumRTT / float64(n)})
	}
	if len(mbps.Points) == 0 {
		return nil, nil
	}
	return []web.Series{mbps, rtt}, nil
}

// Mesh implements web.Probes: the newest completed probe's throughput matrix.
func (w webProbes) Mesh(ctx context.Context) (web.Mesh, error) {
	list, err := w.completed(ctx, 1)
	if err != nil || len(list) == 0 {
		return web.Mesh{}, err
	}
	p := list[0]
	m := web.Mesh{Nodes: p.Nodes, Unit: "Mbit/s", HigherBetter: true, Value: make([][]float64, len(p.Nodes)), Time: p.CreatedAt}
	if p.CompletedAt != nil {
		m.Time = *p.CompletedAt
	}
	at := map[string]int{}
	for i, n := range p.Nodes {
		at[n] = i
		m.Value[i] = make([]float64, len(p.Nodes))
		for j := range m.Value[i] {
			m.Value[i][j] = math.NaN()
		}
	}
	for _, pr := range p.Pairs {
		i, ok1 := at[pr.From]
		j, ok2 := at[pr.To]
		if ok1 && ok2 && pr.Error == "" {
			m.Value[i][j] = pr.Mbps
		}
	}
	return m, nil
}

// completed returns up to n completed probes with their pairs, newest first.
func (w webProbes) completed(ctx context.Context, n int) ([]api.Probe, error) {
	list, err := w.probes.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Probe
	for _, p := range list {
		if len(out) == n {
			break
		}
		if p.State != api.ProbeStateCompleted {
			continue
		}
		full, err := w.probes.Get(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, full)
	}
	return out, nil
}
