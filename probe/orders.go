package probe

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// Orders is one replica's note of the links that wait for an agent to act: started and waiting
// for their To to listen, or listening and waiting for their From to connect, until their
// deadline. Every replica keeps one from the change feed (Apply), so that the one holding the
// agent's stream hands the order over, whether the stream is open when the event comes or
// opens later, here or on another replica (Due). It costs nothing while no probe runs.
type Orders struct {
	store store.Store
	clk   clock.Clock
	mu    sync.Mutex
	links map[api.ProbeLinkRef]*waiting
}

// waiting is one link in the note.
type waiting struct {
	turn     turn
	node     string         // who must act
	order    api.ProbeOrder // without its secret, which the server adds
	deadline time.Time
	sentTo   any // the stream the order last went out on
}

// turn is how far a link has come, in the order its events come: a note only moves forward,
// so that the feed may bring an event again (after a failed read, or from before Load) and
// change nothing.
type turn int

const (
	toListen turn = iota + 1
	toConnect
	over // kept until the deadline, so that an event brought again does not revive the link
)

// linkLife is the longest a link may take: no link started before t runs after t+linkLife.
const linkLife = api.MaxProbeDuration + api.ProbeSetup

// NewOrders returns an empty note over st, on clk.
func NewOrders(st store.Store, clk clock.Clock) *Orders {
	return &Orders{store: st, clk: clk, links: map[api.ProbeLinkRef]*waiting{}}
}

// Load notes the links of the open probes as the store has them: at start, with the feed
// following from before the read.
func (o *Orders) Load(ctx context.Context) error {
	recs, err := o.store.OpenProbes(ctx)
	if err != nil {
		return err
	}
	now := o.clk.Now().UTC()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rec := range recs {
		d, err := decodeDoc(rec.Doc)
		if err != nil {
			return err
		}
		for i, l := range d.Links {
			ref := api.ProbeLinkRef{Probe: rec.ID, Link: i}
			started := api.ProbeLinkStarted{ProbeLinkRef: ref, From: l.From, To: l.To, Bytes: d.Bytes, Duration: d.Duration}
			switch l.State {
			case api.LinkRunning:
				o.note(toListen, started, "", *l.Deadline)
			case api.LinkListening:
				o.note(toConnect, started, l.Addr, *l.Deadline)
			case api.LinkDone, api.LinkFailed:
				o.note(over, started, "", now.Add(linkLife))
			}
		}
	}
	return nil
}

// Apply notes a probe link's event from the feed, and returns the node that now has an order
// due ("" when none).
func (o *Orders) Apply(e api.Event) string {
	var p api.ProbeLinkListening
	if e.Decode(&p) != nil {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forget(e.Time)
	deadline := e.Time.Add(time.Duration(p.Duration) + api.ProbeSetup)
	if w, ok := o.links[p.ProbeLinkRef]; ok {
		deadline = w.deadline // set when the link started; later events keep it
	}
	var t turn
	switch e.Type {
	case api.EventProbeLinkStarted:
		t = toListen
	case api.EventProbeLinkListening:
		t = toConnect
	case api.EventProbeLinkDone:
		t = over
		if end := e.Time.Add(linkLife); end.After(deadline) {
			deadline = end
		}
	default:
		return ""
	}
	w := o.note(t, p.ProbeLinkStarted, p.Addr, deadline)
	if w == nil || w.turn == over {
		return ""
	}
	return w.node
}

// note moves a link to turn t, unless it is there or past it already, and returns the link's
// note when it moved; o.mu is held.
func (o *Orders) note(t turn, p api.ProbeLinkStarted, addr string, deadline time.Time) *waiting {
	if w, ok := o.links[p.ProbeLinkRef]; ok && w.turn >= t {
		return nil
	}
	w := &waiting{turn: t, node: p.To, deadline: deadline,
		order: api.ProbeOrder{ProbeLinkRef: p.ProbeLinkRef, Role: api.ProbeListen, Peer: p.From, Bytes: p.Bytes, Duration: p.Duration}}
	if t == toConnect {
		w.node = p.From
		w.order.Role, w.order.Peer, w.order.Addr = api.ProbeConnect, p.To, addr
	}
	o.links[p.ProbeLinkRef] = w
	return w
}

// forget drops the links past their deadline at now; o.mu is held.
func (o *Orders) forget(now time.Time) {
	for ref, w := range o.links {
		if !now.Before(w.deadline) {
			delete(o.links, ref)
		}
	}
}

// Due returns the orders waiting for node, within their time, that have not gone out on
// stream yet (by link), and notes them as gone out on it: an order goes once on each stream
// the agent opens, since one sent on a stream that broke may never have arrived.
func (o *Orders) Due(node string, stream any) []api.ProbeOrder {
	now := o.clk.Now().UTC()
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []api.ProbeOrder
	for _, w := range o.links {
		if w.turn == over || w.node != node || w.sentTo == stream || !now.Before(w.deadline) {
			continue
		}
		w.sentTo = stream
		out = append(out, w.order)
	}
	slices.SortFunc(out, func(a, b api.ProbeOrder) int {
		return cmp.Or(cmp.Compare(a.Probe, b.Probe), cmp.Compare(a.Link, b.Link))
	})
	return out
}
