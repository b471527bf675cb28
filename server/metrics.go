package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg              *prometheus.Registry
	requestDuration  *prometheus.HistogramVec
	agentConnections prometheus.Gauge
	heartbeats       prometheus.Counter
	events           prometheus.Counter
}

func newMetrics(h *hub) *metrics {
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
		&nodeCollector{hub: h},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var nodesDesc = prometheus.NewDesc("ferry_nodes", "Enrolled nodes by site and status.", []string{"site", "status"}, nil)

// nodeCollector reads node counts from the hub at scrape time.
type nodeCollector struct{ hub *hub }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- nodesDesc }

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range c.hub.counts() {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
