// Package probe runs mesh probes: it measures TCP throughput and round-trip time between pairs
// of agents (api/probe.go tells the whole walk). The service starts probes and records what
// agents report; the leader's engine works through each probe's links, a few at a time, with
// each node in one link at a time, and fails the links whose nodes are down or silent.
package probe

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Doc is a probe as the store keeps it (store.ProbeRecord.Doc).
type Doc struct {
	Selector    string       `json:"selector"`
	Bytes       int64        `json:"bytes"`
	Duration    api.Duration `json:"duration"`
	Nodes       []string     `json:"nodes"`
	Links       []Link       `json:"links"`
	CompletedAt *time.Time   `json:"completed_at,omitempty"`
}

// Link is an unordered pair of nodes measured over one connection: To listens, From connects,
// sends Bytes (Up), then receives Bytes (Down).
type Link struct {
	From     string     `json:"from"`
	To       string     `json:"to"`
	State    string     `json:"state"`
	Deadline *time.Time `json:"deadline,omitempty"` // while running or listening
	Addr     string     `json:"addr,omitempty"`     // where To listens
	RTT      api.RTT    `json:"rtt_ms"`
	UpMbps   float64    `json:"up_mbps,omitempty"`
	DownMbps float64    `json:"down_mbps,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// active reports whether the link takes its nodes' time now.
func (l Link) active() bool { return l.State == api.LinkRunning || l.State == api.LinkListening }

// newDoc makes the document of a probe over nodes (sorted, at least two): one link per
// unordered pair, From before To in the order of nodes.
func newDoc(req api.ProbeStart, nodes []string) Doc {
	d := Doc{Selector: req.Selector, Bytes: req.Bytes, Duration: req.Duration, Nodes: nodes}
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			d.Links = append(d.Links, Link{From: nodes[i], To: nodes[j], State: api.LinkPending})
		}
	}
	return d
}

func decodeDoc(b []byte) (Doc, error) {
	var d Doc
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("probe document: %w", err)
	}
	return d, nil
}

func (d Doc) state() string {
	if d.CompletedAt != nil {
		return api.ProbeStateCompleted
	}
	return api.ProbeStateRunning
}

// fail ends a link with why.
func (l *Link) fail(why string) {
	if len(why) > api.MaxProbeError {
		why = why[:api.MaxProbeError]
	}
	l.State, l.Error, l.Deadline, l.Addr = api.LinkFailed, why, nil, ""
}

// Step moves a probe on at now, given the status of its nodes (a node missing from status is
// gone): it fails the active links past their deadline or whose node left, fails the pending
// links whose node is not up, starts pending links whose nodes are both free (at most
// api.MaxProbeParallel at once), and completes the probe when no link is left to run. It
// returns the events to record (without time or actor) and when to step again if nothing
// happens first (zero: nothing to wait for).
func Step(d *Doc, id int64, status map[string]string, now time.Time) ([]api.Event, time.Time) {
	if d.CompletedAt != nil {
		return nil, time.Time{}
	}
	var evs []api.Event
	done := func(i int) { evs = append(evs, linkDone(now, api.ProbeLinkRef{Probe: id, Link: i}, d.Links[i])) }
	notUp := func(l Link) string {
		for _, n := range []string{l.From, l.To} {
			switch st, ok := status[n]; {
			case !ok:
				return fmt.Sprintf("node %s is gone", n)
			case st != api.StatusUp:
				return fmt.Sprintf("node %s is %s", n, st)
			}
		}
		return ""
	}
	busy := map[string]bool{}
	active := 0
	for i := range d.Links {
		l := &d.Links[i]
		if !l.active() {
			continue
		}
		switch why := notUp(*l); {
		case why != "":
			l.fail(why)
			done(i)
			continue
		case !now.Before(*l.Deadline):
			if l.State == api.LinkRunning {
				l.fail(fmt.Sprintf("node %s did not open its listener in time", l.To))
			} else {
				l.fail(fmt.Sprintf("node %s reported no result in time", l.From))
			}
			done(i)
			continue
		}
		busy[l.From], busy[l.To] = true, true
		active++
	}
	pending := 0
	for i := range d.Links {
		l := &d.Links[i]
		if l.State != api.LinkPending {
			continue
		}
		if why := notUp(*l); why != "" {
			l.fail(why)
			done(i)
			continue
		}
		if busy[l.From] || busy[l.To] || active >= api.MaxProbeParallel {
			pending++
			continue
		}
		dl := now.Add(time.Duration(d.Duration) + api.ProbeSetup)
		l.State, l.Deadline = api.LinkRunning, &dl
		busy[l.From], busy[l.To] = true, true
		active++
		evs = append(evs, api.NewEvent(now, api.EventProbeLinkStarted, l.To, api.ProbeLinkStarted{
			ProbeLinkRef: api.ProbeLinkRef{Probe: id, Link: i}, From: l.From, To: l.To, Bytes: d.Bytes, Duration: d.Duration}))
	}
	if active == 0 && pending == 0 {
		at := now
		d.CompletedAt = &at
		c := api.ProbeCompleted{Links: len(d.Links)}
		for _, l := range d.Links {
			if l.State == api.LinkFailed {
				c.Failed++
			}
		}
		return append(evs, api.NewEvent(now, api.EventProbeCompleted, api.ProbeSubject(id), c)), time.Time{}
	}
	var wake time.Time
	for _, l := range d.Links {
		if l.active() && (wake.IsZero() || l.Deadline.Before(wake)) {
			wake = *l.Deadline
		}
	}
	return evs, wake
}

// View is the probe as operators see it: each link as two directed pairs, sorted by From then
// To; without pairs when brief.
func View(id int64, d Doc, createdAt time.Time, createdBy string, brief bool) api.Probe {
	p := api.Probe{ID: id, State: d.state(), Selector: d.Selector, Bytes: d.Bytes, Duration: d.Duration, Nodes: d.Nodes,
		CreatedAt: createdAt, CreatedBy: createdBy, CompletedAt: d.CompletedAt, Links: len(d.Links)}
	for _, l := range d.Links {
		switch l.State {
		case api.LinkDone:
			p.Done++
		case api.LinkFailed:
			p.Failed++
		}
		if brief {
			continue
		}
		// Measures shown to 0.1 Mbit/s and 1 µs: the rest is noise.
		rtt := api.RTT{Min: round(l.RTT.Min, 1000), Avg: round(l.RTT.Avg, 1000), Max: round(l.RTT.Max, 1000)}
		p.Pairs = append(p.Pairs,
			api.Pair{From: l.From, To: l.To, State: l.State, Mbps: round(l.UpMbps, 10), RTTms: rtt, Error: l.Error},
			api.Pair{From: l.To, To: l.From, State: l.State, Mbps: round(l.DownMbps, 10), RTTms: rtt, Error: l.Error})
	}
	slices.SortFunc(p.Pairs, func(a, b api.Pair) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	return p
}

// round rounds v to 1/per.
func round(v, per float64) float64 { return math.Round(v*per) / per }
