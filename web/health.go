package web

import (
	"context"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Health words the pages show, and the dots' colours: green, amber, red, grey.
const (
	HealthOK          = "ok"
	HealthWarning     = "warning"
	HealthCritical    = "critical"
	HealthUnreachable = "unreachable"
)

// Health is what the pages ask of the fleet's health: site and node health, each node's checks
// and their history, and the fleet's check results over time. NodeStatusHealth answers from the
// nodes' status alone until the health service is wired in.
type Health interface {
	// SiteHealth is the health of a site, given its nodes (revoked ones left out).
	SiteHealth(ctx context.Context, site api.Site, nodes []api.Node) (string, error)
	// NodeHealth is the health of one node.
	NodeHealth(ctx context.Context, n api.Node) (string, error)
	// NodeChecks is the latest result of each check of a node.
	NodeChecks(ctx context.Context, node string) ([]Check, error)
	// CheckHistory is a node's check's results over time, oldest first.
	CheckHistory(ctx context.Context, node, check string) ([]Point, error)
	// CheckSeries is the fleet's check results over time (say, checks failing by state), for
	// the statistics page.
	CheckSeries(ctx context.Context) ([]Series, error)
}

// Probes is what the statistics page shows of the mesh probes: their results over time and the
// latest matrix. NoProbes has none.
type Probes interface {
	ProbeSeries(ctx context.Context) ([]Series, error)
	Mesh(ctx context.Context) (Mesh, error)
}

// Check is the latest result of one check on a node.
type Check struct {
	Name   string
	State  string // OK, WARNING, CRITICAL, UNKNOWN
	Output string
	Time   time.Time
	// Unit is what CheckHistory's values count: the first perf value's unit, or the states'
	// codes when the check gives no perfdata.
	Unit string
}

// Point is one value at one time.
type Point struct {
	Time  time.Time
	Value float64
}

// Series is a named line of points, oldest first.
type Series struct {
	Name   string
	Unit   string
	Points []Point
}

// Mesh is a matrix of probe results between nodes: Value[i][j] from Nodes[i] to Nodes[j], NaN
// where there is none.
type Mesh struct {
	Nodes []string
	Unit  string
	// HigherBetter says a higher value is the better one (throughput); else lower is (latency).
	HigherBetter bool
	Value        [][]float64
	Time         time.Time
}

// NodeStatusHealth derives health from the nodes' status: a site whose nodes are all up is ok,
// one with some down a warning, one with none up unreachable; it knows of no check.
type NodeStatusHealth struct{}

var _ Health = NodeStatusHealth{}

// SiteHealth implements Health.
func (NodeStatusHealth) SiteHealth(_ context.Context, _ api.Site, nodes []api.Node) (string, error) {
	up, down := countStatus(nodes)
	switch {
	case up == 0 && down > 0:
		return HealthUnreachable, nil
	case down > 0:
		return HealthWarning, nil
	}
	return HealthOK, nil
}

// NodeHealth implements Health.
func (NodeStatusHealth) NodeHealth(_ context.Context, n api.Node) (string, error) {
	if n.Status != api.StatusUp {
		return HealthUnreachable, nil
	}
	for _, a := range n.Apps {
		switch a.State {
		case api.AppStateFailed, api.AppStateCrashloop:
			return HealthCritical, nil
		case api.AppStateRolledBack:
			return HealthWarning, nil
		}
	}
	return HealthOK, nil
}

// NodeChecks implements Health.
func (NodeStatusHealth) NodeChecks(context.Context, string) ([]Check, error) { return nil, nil }

// CheckHistory implements Health.
func (NodeStatusHealth) CheckHistory(context.Context, string, string) ([]Point, error) {
	return nil, nil
}

// CheckSeries implements Health.
func (NodeStatusHealth) CheckSeries(context.Context) ([]Series, error) { return nil, nil }

// NoProbes has no probe results.
type NoProbes struct{}

var _ Probes = NoProbes{}

// ProbeSeries implements Probes.
func (NoProbes) ProbeSeries(context.Context) ([]Series, error) { return nil, nil }

// Mesh implements Probes.
func (NoProbes) Mesh(context.Context) (Mesh, error) { return Mesh{}, nil }

// countStatus counts nodes up and down.
func countStatus(nodes []api.Node) (up, down int) {
	for _, n := range nodes {
		switch n.Status {
		case api.StatusUp:
			up++
		case api.StatusDown:
			down++
		}
	}
	return up, down
}
