package server

import (
	"crypto/subtle"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/health"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
)

// hub is the in-memory view of every enrolled node that agent requests need on their hot path:
// whether the node may talk, and its desired state with a channel that closes when that
// state changes. The store stays the source of truth; the hub is rebuilt from it at start.
type hub struct {
	mu       sync.RWMutex
	nodes    map[string]*hubNode
	interval time.Duration // the heartbeat interval pushes tell agents
	// checks are the operator checks, of which each node's desired state holds those that
	// select it. A change of them reaches the agents through the nodes it selected, whose
	// generation it moved (check.added, check.removed).
	checks []health.Compiled
}

type hubNode struct {
	keyFP string // fingerprint of the key the node enrolled with, which its sessions name
	site  string
	// siteLabels and tier are what a selector sees of the node beside its own labels.
	siteLabels map[string]string
	tier       int
	desired    api.Desired
	stream     *stream // the agent's open stream (protocol 2), if any
}

func newHub(interval time.Duration) *hub {
	return &hub{nodes: map[string]*hubNode{}, interval: interval}
}

// put records a node's current state from the store, pushing it to the node's stream if the
// generation moved.
func (h *hub) put(n api.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n.Status == api.StatusRevoked {
		if old, ok := h.nodes[n.Name]; ok {
			if old.stream != nil {
				old.stream.end()
			}
			delete(h.nodes, n.Name)
		}
		return
	}
	old, ok := h.nodes[n.Name]
	if ok && n.Generation < old.desired.Generation {
		return // a slower writer's older read: the hub already has newer state
	}
	hn := &hubNode{site: n.Site, siteLabels: n.SiteLabels, tier: n.Tier,
		desired: api.Desired{Generation: n.Generation, Labels: n.Labels, Apps: n.Assigned}}
	hn.desired.Checks = health.Matching(h.checks, hn.selectorLabels())
	if n.PublicKey != "" {
		hn.keyFP = keyFingerprint(n.PublicKey)
	} else if ok {
		hn.keyFP = old.keyFP
	}
	if ok {
		hn.stream = old.stream
		if old.desired.Generation != n.Generation && hn.stream != nil {
			hn.stream.push(hn.desired, h.interval)
		}
	}
	h.nodes[n.Name] = hn
}

// selectorLabels are the labels a selector sees on the node (inventory.Labels).
func (n *hubNode) selectorLabels() labels.Set {
	return inventory.Labels(api.Node{Site: n.site, Tier: n.tier, Labels: n.desired.Labels, SiteLabels: n.siteLabels})
}

// setChecks replaces the operator checks. Nodes take them up when they are put next, which
// the event that changed the checks asks for.
func (h *hub) setChecks(checks []api.CheckSpec) {
	c := health.Compile(checks)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = c
}

// allowsCheck says whether a node may report a check: one of the operator checks in its
// desired state, or APP/NAME (app APP) of an app assigned to it.
func (h *hub) allowsCheck(node, check, app string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n, ok := h.nodes[node]
	if !ok {
		return false
	}
	if app != "" {
		for _, a := range n.desired.Apps {
			if a.App == app {
				return true
			}
		}
		return false
	}
	for _, c := range n.desired.Checks {
		if c.Name == check {
			return true
		}
	}
	return false
}

// attach makes st the node's stream, ending any earlier one; false if the node is gone.
func (h *hub) attach(name string, st *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[name]
	if !ok {
		return false
	}
	if n.stream != nil {
		n.stream.end()
	}
	n.stream = st
	return true
}

// detach forgets st when it is still the node's stream, and says whether it was.
func (h *hub) detach(name string, st *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, ok := h.nodes[name]; ok && n.stream == st {
		n.stream = nil
		return true
	}
	return false
}

// relabel gives a node the labels that make its generation gen, pushing the new desired state
// to its stream. It applies only on top of generation gen-1, what the hub holds when it has
// seen every change before this one; false means the caller must read the node instead.
func (h *hub) relabel(name string, labels map[string]string, gen int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[name]
	if !ok || gen == 0 || n.desired.Generation != gen-1 {
		return false
	}
	n.desired.Labels, n.desired.Generation = labels, gen
	n.desired.Checks = health.Matching(h.checks, n.selectorLabels())
	if n.stream != nil {
		n.stream.push(n.desired, h.interval)
	}
	return true
}

// endStream ends the node's stream if it has one opened at or before t: a stream opened after
// the caller judged the node silent is the node speaking again, and stays.
func (h *hub) endStream(name string, t time.Time) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if n, ok := h.nodes[name]; ok && n.stream != nil && !n.stream.opened.After(t) {
		n.stream.end()
	}
}

// endStreams ends every open stream.
func (h *hub) endStreams() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, n := range h.nodes {
		if n.stream != nil {
			n.stream.end()
		}
	}
}

// remove drops a node (revoked or its site removed) and ends its stream.
func (h *hub) remove(name string) {
	h.put(api.Node{Name: name, Status: api.StatusRevoked})
}

// enrolledWith reports whether the node is active under the key with fingerprint fp.
func (h *hub) enrolledWith(name, fp string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n, ok := h.nodes[name]
	return ok && n.keyFP != "" && subtle.ConstantTimeCompare([]byte(n.keyFP), []byte(fp)) == 1
}

// watch returns the node's desired state; false if the node is gone.
func (h *hub) watch(name string) (api.Desired, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n, ok := h.nodes[name]
	if !ok {
		return api.Desired{}, false
	}
	return n.desired, true
}

// generation returns the generation of the node's desired state; false if the node is gone.
func (h *hub) generation(name string) (int64, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n, ok := h.nodes[name]
	if !ok {
		return 0, false
	}
	return n.desired.Generation, true
}
