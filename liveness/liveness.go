// Package liveness is Ferry's failure detector, the field's "central sweep": it remembers when
// each node last spoke and says which nodes fell silent past the grace period and which came
// back. It holds no clock of its own; callers pass the time, so the grace logic is tested
// without sleeping.
package liveness

import (
	"sort"
	"sync"
	"time"
)

// Detector tracks node heartbeats. It is safe for concurrent use.
type Detector struct {
	grace time.Duration

	mu    sync.Mutex
	nodes map[string]*entry
	dirty map[string]time.Time // last-seen times not yet persisted
}

type entry struct {
	seen time.Time
	down bool
}

// New returns a detector that calls a node down after grace without a heartbeat.
func New(grace time.Duration) *Detector {
	return &Detector{grace: grace, nodes: map[string]*entry{}, dirty: map[string]time.Time{}}
}

// Track starts watching a node with its last known state. A server that starts after being
// away counts from its own start: it cannot know what happened while it was gone, so it gives
// every node a full grace period to report before calling it down.
func (d *Detector) Track(name string, down bool, seen time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes[name] = &entry{seen: seen, down: down}
}

// Forget stops watching a node (revoked or removed).
func (d *Detector) Forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.nodes, name)
	delete(d.dirty, name)
}

// Heartbeat records that a node spoke at now. It reports true when the node was down, so the
// caller records its return; the detector already counts it as up.
func (d *Detector) Heartbeat(name string, now time.Time) (cameBack, known bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.nodes[name]
	if !ok {
		return false, false
	}
	if now.After(e.seen) {
		e.seen = now
	}
	d.dirty[name] = e.seen
	if e.down {
		e.down = false
		return true, true
	}
	return false, true
}

// HeartbeatUp records that a node the detector holds up spoke at now, as Heartbeat does; for a
// node it holds down or does not track it records nothing and reports false, so that the caller
// can go the longer way of Heartbeat and record the node's return.
func (d *Detector) HeartbeatUp(name string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.nodes[name]
	if !ok || e.down {
		return false
	}
	if now.After(e.seen) {
		e.seen = now
	}
	d.dirty[name] = e.seen
	return true
}

// SetDown records that the node was judged down at judged (by this replica's sweep or
// another's), so that its next heartbeat here reports its return — unless the detector heard
// the node at or after judged: it came back since, and its return is being recorded.
func (d *Detector) SetDown(name string, judged time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.nodes[name]; ok && e.seen.Before(judged) {
		e.down = true
	}
}

// Vouch holds a node up as seen at seen (or later, if the detector saw it later): someone
// else speaks for it, such as the replica that holds its stream, or the node was marked up
// elsewhere. It is silent again only a grace period after seen.
func (d *Detector) Vouch(name string, seen time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.nodes[name]; ok {
		e.down = false
		if seen.After(e.seen) {
			e.seen = seen
		}
	}
}

// Down reports whether the detector holds the node down now; known is false for a node it does
// not track.
func (d *Detector) Down(name string) (down, known bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.nodes[name]
	if !ok {
		return false, false
	}
	return e.down, true
}

// Sweep returns, sorted, the nodes that have been silent for the grace period or longer as of
// now and marks them down; each is returned once per silence.
func (d *Detector) Sweep(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for name, e := range d.nodes {
		if !e.down && now.Sub(e.seen) >= d.grace {
			e.down = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// NextDeadline is the earliest time a node still up could be called down; zero when none is up.
func (d *Detector) NextDeadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var next time.Time
	for _, e := range d.nodes {
		if e.down {
			continue
		}
		if dl := e.seen.Add(d.grace); next.IsZero() || dl.Before(next) {
			next = dl
		}
	}
	return next
}

// LastSeen is when the node last spoke, as far as this detector knows.
func (d *Detector) LastSeen(name string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.nodes[name]
	if !ok {
		return time.Time{}, false
	}
	return e.seen, true
}

// TakeSeen returns the last-seen times recorded since the previous call, for persisting in one
// batch rather than a write per heartbeat.
func (d *Detector) TakeSeen() map[string]time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.dirty
	d.dirty = map[string]time.Time{}
	return out
}
