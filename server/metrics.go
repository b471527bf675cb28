package server

import (
	"cmp"
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/overview"
	"github.com/ferryhq/ferry/rollout"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Two kinds of metrics: this replica's own (its requests, agent connections, heartbeats, the
// Go runtime and the process), and the fleet's gauges, read at scrape time from the overview's
// snapshot of the shared store, so every replica reports the same fleet.
type metrics struct {
	reg              *prometheus.Registry
	handler          http.Handler // the exposition of reg
	requestDuration  *prometheus.HistogramVec
	agentConnections prometheus.Gauge
	heartbeats       prometheus.Counter
	events           prometheus.Counter
}

func newMetrics(fleet *overview.Service) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern and status code (agent syncs include their hold time).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "code"}),
		agentConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_agent_connections",
			Help: "Agents holding an open sync (long poll) with this server.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_heartbeats_total",
			Help: "Agent heartbeats received.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_events_total",
			Help: "Events appended to the log by this server.",
		}),
	}
	m.reg.MustRegister(m.requestDuration, m.agentConnections, m.heartbeats, m.events,
		&fleetCollector{fleet: fleet, maxAge: fleetMaxAge},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// fleetMaxAge is how long a scrape may reuse the fleet's snapshot after the store changed: a
// fleet of 10,000 nodes changes all the time, and reading it costs far more than a scrape
// should, however many scrapers ask.
const fleetMaxAge = 5 * time.Second

// Bounds on the label values of the apps gauge, whose apps and versions come from the nodes'
// reports: past them, the nodes count under otherLabel.
const (
	maxMetricApps     = 100
	maxMetricVersions = 10 // per app
	otherLabel        = "_other"
)

const fleetNote = " Fleet-wide, from the shared store: every replica reports the same."

var (
	nodesDesc        = prometheus.NewDesc("ferry_nodes", "Enrolled nodes by site and status."+fleetNote, []string{"site", "status"}, nil)
	sitesDesc        = prometheus.NewDesc("ferry_sites", "Sites by health (ok, warning, critical, unreachable, unknown)."+fleetNote, []string{"health"}, nil)
	appsDesc         = prometheus.NewDesc("ferry_apps", "Nodes reporting an app at a version in a state (version none: not installed yet). At most 100 apps and 10 versions per app, the most common; the rest count as _other."+fleetNote, []string{"app", "version", "state"}, nil)
	rolloutStateDesc = prometheus.NewDesc("ferry_rollout_state", "1 for the state each open rollout is in, 0 for the others."+fleetNote, []string{"rollout", "release", "state"}, nil)
	rolloutNodesDesc = prometheus.NewDesc("ferry_rollout_nodes", "Nodes of each open rollout by wave and by their state in it."+fleetNote, []string{"rollout", "release", "wave", "state"}, nil)
	checksDesc       = prometheus.NewDesc("ferry_checks", "Checks (one per node and check) by their latest state."+fleetNote, []string{"state"}, nil)
	alertsDesc       = prometheus.NewDesc("ferry_alerts_open", "Alerts open and not acknowledged."+fleetNote, nil, nil)
)

var (
	siteHealths = []string{api.HealthOK, api.HealthWarning, api.HealthCritical, api.HealthUnreachable, api.HealthUnknown}
	checkStates = []string{api.CheckOK, api.CheckWarning, api.CheckCritical, api.CheckUnknown}
)

// fleetCollector reads the fleet's gauges from the overview at scrape time.
type fleetCollector struct {
	fleet  *overview.Service
	maxAge time.Duration
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodesDesc, sitesDesc, appsDesc, rolloutStateDesc, rolloutNodesDesc, checksDesc, alertsDesc} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := c.fleet.Snapshot(ctx, c.maxAge)
	if err != nil {
		// The scrape fails (promhttp answers 500), so Prometheus's up says the fleet is unread.
		ch <- prometheus.NewInvalidMetric(nodesDesc, err)
		return
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	healths := map[string]int{}
	for _, s := range snap.Sites {
		gauge(nodesDesc, s.Up, s.Name, api.StatusUp)
		gauge(nodesDesc, s.Down, s.Name, api.StatusDown)
		healths[s.Health]++
	}
	for _, h := range siteHealths {
		gauge(sitesDesc, healths[h], h)
	}
	for k, n := range boundApps(snap.Apps) {
		gauge(appsDesc, n, k.App, k.Version, k.State)
	}
	for _, r := range snap.Rollouts {
		id := strconv.FormatInt(r.ID, 10)
		for _, st := range rollout.States {
			gauge(rolloutStateDesc, b2i(st == r.State), id, r.Release, st)
		}
		for i, w := range r.Waves {
			for _, st := range rollout.NodeStates {
				gauge(rolloutNodesDesc, r.NodeStates[i][st], id, r.Release, w.Name, st)
			}
		}
	}
	for _, st := range checkStates {
		gauge(checksDesc, snap.Checks[st], st)
	}
	gauge(alertsDesc, snap.Alerts)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// boundApps returns the apps' counts with the label values bounded: the maxMetricApps apps
// that most nodes report, and of each the maxMetricVersions versions most nodes run; the rest
// count under otherLabel. An empty version (not installed yet) is "none", an empty state
// "unknown".
func boundApps(apps map[overview.AppKey]int) map[overview.AppKey]int {
	byApp := map[string]map[string]int{} // app → version → nodes
	for k, n := range apps {
		if byApp[k.App] == nil {
			byApp[k.App] = map[string]int{}
		}
		byApp[k.App][k.Version] += n
	}
	keep := func(counts map[string]int, max int) map[string]bool {
		names := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
			return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
		})
		kept := map[string]bool{}
		for _, name := range names[:min(max, len(names))] {
			kept[name] = true
		}
		return kept
	}
	appTotals := map[string]int{}
	for app, versions := range byApp {
		for _, n := range versions {
			appTotals[app] += n
		}
	}
	keptApps := keep(appTotals, maxMetricApps)
	keptVersions := map[string]map[string]bool{}
	for app := range keptApps {
		keptVersions[app] = keep(byApp[app], maxMetricVersions)
	}
	out := map[overview.AppKey]int{}
	for k, n := range apps {
		switch {
		case !keptApps[k.App]:
			k.App, k.Version = otherLabel, otherLabel
		case !keptVersions[k.App][k.Version]:
			k.Version = otherLabel
		case k.Version == "":
			k.Version = "none"
		}
		if k.State == "" {
			k.State = "unknown"
		}
		out[k] += n
	}
	return out
}
