package probe

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Service starts mesh probes, shows them and records what agents report.
type Service struct {
	store store.Store
	clk   clock.Clock
}

// New returns the service over st, on clk.
func New(st store.Store, clk clock.Clock) *Service { return &Service{store: st, clk: clk} }

// Start stores a probe over the nodes req.Selector selects (revoked ones aside; down ones get
// a failed link each), at least two and at most api.MaxProbeNodes, and records probe.requested.
func (s *Service) Start(ctx context.Context, req api.ProbeStart) (api.Probe, api.Event, error) {
	if err := req.Normalize(); err != nil {
		return api.Probe{}, api.Event{}, fault.Invalid("%v", err)
	}
	sel, err := labels.ParseSelector(req.Selector)
	if err != nil {
		return api.Probe{}, api.Event{}, fault.Invalid("%v", err)
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return api.Probe{}, api.Event{}, err
	}
	var names []string
	for _, n := range nodes {
		if n.Status != api.StatusRevoked && sel.Matches(inventory.Labels(n)) {
			names = append(names, n.Name)
		}
	}
	slices.Sort(names)
	switch {
	case len(names) < 2:
		return api.Probe{}, api.Event{}, fault.Invalid("selector %q matches %d node(s); a mesh probe measures between at least 2", req.Selector, len(names))
	case len(names) > api.MaxProbeNodes:
		return api.Probe{}, api.Event{}, fault.Invalid("selector %q matches %d nodes; a mesh probe takes at most %d (%d connections): narrow the selector, e.g. by site", req.Selector, len(names), api.MaxProbeNodes, api.MaxProbeNodes*(api.MaxProbeNodes-1)/2)
	}
	d := newDoc(req, names)
	doc, _ := json.Marshal(d)
	now := s.clk.Now().UTC()
	rec := store.ProbeRecord{Doc: doc, State: d.state(), Open: true, CreatedAt: now, CreatedBy: store.ActorFrom(ctx).ID, UpdatedAt: now}
	var ev api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		id, err := tx.InsertProbe(rec)
		if err != nil {
			return err
		}
		rec.ID = id
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventProbeRequested, api.ProbeSubject(id),
			api.ProbeRequested{Nodes: names, Links: len(d.Links), Bytes: d.Bytes, Duration: d.Duration}))
		return err
	})
	if err != nil {
		return api.Probe{}, api.Event{}, err
	}
	p := View(rec.ID, d, rec.CreatedAt, rec.CreatedBy, false)
	p.Event = ev.ID
	return p, ev, nil
}

// Get returns one probe with its pairs.
func (s *Service) Get(ctx context.Context, id int64) (api.Probe, error) {
	rec, err := s.store.Probe(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return api.Probe{}, fault.NotFound("probe %d not found; see ferry probe list", id)
	}
	if err != nil {
		return api.Probe{}, err
	}
	d, err := decodeDoc(rec.Doc)
	if err != nil {
		return api.Probe{}, err
	}
	return View(rec.ID, d, rec.CreatedAt, rec.CreatedBy, false), nil
}

// List returns the latest probes, newest first, without their pairs.
func (s *Service) List(ctx context.Context) ([]api.Probe, error) {
	recs, err := s.store.Probes(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Probe{}
	for _, rec := range recs {
		d, err := decodeDoc(rec.Doc)
		if err != nil {
			return nil, err
		}
		out = append(out, View(rec.ID, d, rec.CreatedAt, rec.CreatedBy, true))
	}
	return out, nil
}

// Retention is how long a completed probe is kept, counted from its completion; the newest
// store.MaxProbeList probes, what ferry probe list shows, stay whatever their age.
const Retention = 30 * 24 * time.Hour

// Prune forgets the completed probes past their retention, and says how many. The leader
// runs it now and then.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	return s.store.PruneProbes(ctx, s.clk.Now().Add(-Retention), store.MaxProbeList)
}

// Listening records that node listens for a link at l.Host:l.Port, or at source:l.Port when
// the agent states no host (source: where its report came from), or that it could not; node
// must be the link's To, and the link must wait for it.
func (s *Service) Listening(ctx context.Context, node string, ref api.ProbeLinkRef, source string, l api.ProbeListening) (api.Event, error) {
	if err := l.Validate(); err != nil {
		return api.Event{}, fault.Invalid("%v", err)
	}
	host := cmp.Or(l.Host, source)
	return s.onLink(ctx, ref, linkTurn{node: node, listens: true, state: api.LinkRunning}, func(lk *Link, d Doc, now time.Time) api.Event {
		if l.Error != "" {
			lk.fail(fmt.Sprintf("node %s could not listen: %s", node, l.Error))
			return linkDone(now, ref, *lk)
		}
		lk.State, lk.Addr = api.LinkListening, net.JoinHostPort(host, strconv.Itoa(l.Port))
		started := api.ProbeLinkStarted{ProbeLinkRef: ref, From: lk.From, To: lk.To, Bytes: d.Bytes, Duration: d.Duration}
		return api.NewEvent(now, api.EventProbeLinkListening, lk.From, api.ProbeLinkListening{ProbeLinkStarted: started, Addr: lk.Addr})
	})
}

// Report records what node measured over a link, or why it could not; node must be the
// link's From, and the link must be listening.
func (s *Service) Report(ctx context.Context, node string, ref api.ProbeLinkRef, r api.ProbeResult) (api.Event, error) {
	if err := r.Validate(); err != nil {
		return api.Event{}, fault.Invalid("%v", err)
	}
	return s.onLink(ctx, ref, linkTurn{node: node, state: api.LinkListening}, func(lk *Link, _ Doc, now time.Time) api.Event {
		if r.Error != "" {
			lk.fail(fmt.Sprintf("node %s: %s", node, r.Error))
		} else {
			lk.State, lk.Deadline, lk.Addr = api.LinkDone, nil, ""
			lk.RTT, lk.UpMbps, lk.DownMbps = r.RTTms, r.UpMbps, r.DownMbps
		}
		return linkDone(now, ref, *lk)
	})
}

// linkTurn is whose turn a link waits for: node's, as its listener (To) or as the side that
// connects (From), in state.
type linkTurn struct {
	node    string
	listens bool
	state   string
}

// check refuses a report from a node that is not the link's, or that the link does not wait for.
func (t linkTurn) check(ref api.ProbeLinkRef, l Link) error {
	side, what := l.From, "connect"
	if t.listens {
		side, what = l.To, "listen"
	}
	if side != t.node {
		return fault.Forbidden("node %s does not %s on link %d of probe %d", t.node, what, ref.Link, ref.Probe)
	}
	if l.State != t.state {
		return fault.Conflict("link %d of probe %d is %s: it does not wait for node %s to %s", ref.Link, ref.Probe, l.State, t.node, what)
	}
	return nil
}

func linkDone(now time.Time, ref api.ProbeLinkRef, l Link) api.Event {
	return api.NewEvent(now, api.EventProbeLinkDone, api.ProbeSubject(ref.Probe), api.ProbeLinkDone{ProbeLinkRef: ref, From: l.From, To: l.To, Error: l.Error})
}

// onLink runs change on a link of an open probe when it is turn's, in one transaction, and
// stores the probe and the event change returns. change gets the link, the probe's document
// and the time.
func (s *Service) onLink(ctx context.Context, ref api.ProbeLinkRef, turn linkTurn, change func(*Link, Doc, time.Time) api.Event) (api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.Probe(ref.Probe)
		if errors.Is(err, store.ErrNotFound) {
			return fault.NotFound("probe %d not found", ref.Probe)
		}
		if err != nil {
			return err
		}
		d, err := decodeDoc(rec.Doc)
		if err != nil {
			return err
		}
		if ref.Link < 0 || ref.Link >= len(d.Links) {
			return fault.NotFound("probe %d has no link %d", ref.Probe, ref.Link)
		}
		if !rec.Open {
			return fault.Conflict("probe %d is completed", ref.Probe)
		}
		if err := turn.check(ref, d.Links[ref.Link]); err != nil {
			return err
		}
		e := change(&d.Links[ref.Link], d, now)
		rec.Doc, _ = json.Marshal(d)
		rec.UpdatedAt = now
		if err := tx.UpdateProbe(rec); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, e)
		return err
	})
	return ev, err
}
