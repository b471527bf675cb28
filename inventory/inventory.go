// Package inventory is the service that keeps the fleet's inventory: sites, nodes, their labels,
// and which nodes a query selects. Its methods are plain Go calls with typed inputs and
// failures (package fault); each writes state and its events in one store transaction and
// returns the events, which reach everything else through the store's change feed.
package inventory

import (
	"context"
	"crypto/subtle"
	"errors"
	"maps"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Service is the inventory.
type Service struct {
	store store.Store
	clk   clock.Clock
	// Removed, when set, runs in the transaction that revokes nodes (removed, or their site
	// removed) and returns the events it appended: what others keep of the nodes ends with them
	// (health clears their alerts).
	Removed func(tx store.Tx, nodes []string, at time.Time) ([]api.Event, error)
}

// New returns the inventory over st, on clk.
func New(st store.Store, clk clock.Clock) *Service { return &Service{store: st, clk: clk} }

// CheckSite validates a new site.
func CheckSite(a api.SiteAdd) error {
	if err := labels.CheckName("site name", a.Name); err != nil {
		return fault.Invalid("%v", err)
	}
	if a.Tier < 1 || a.Tier > 3 {
		return fault.Invalid("invalid tier %d: 1 runs a relay, 2 administers its own nodes, 3 lends nodes", a.Tier)
	}
	if (a.Lat == nil) != (a.Lon == nil) {
		return fault.Invalid("give both lat and lon, or neither")
	}
	if a.Lat != nil && (math.IsNaN(*a.Lat) || *a.Lat < -90 || *a.Lat > 90 || math.IsNaN(*a.Lon) || *a.Lon < -180 || *a.Lon > 180) {
		return fault.Invalid("invalid location %v,%v: lat must be within ±90 and lon within ±180", *a.Lat, *a.Lon)
	}
	if len(a.Contact) > 254 {
		return fault.Invalid("contact longer than 254 characters")
	}
	return nil
}

// AddSite adds a site.
func (s *Service) AddSite(ctx context.Context, a api.SiteAdd) (api.Site, api.Event, error) {
	if err := CheckSite(a); err != nil {
		return api.Site{}, api.Event{}, err
	}
	site := api.Site{Name: a.Name, Tier: a.Tier, Lat: a.Lat, Lon: a.Lon, Contact: a.Contact, CreatedAt: s.clk.Now().UTC()}
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertSite(site); err != nil {
			if errors.Is(err, store.ErrExists) {
				return fault.Conflict("site %q already exists", site.Name)
			}
			return err
		}
		var err error
		ev, err = store.AppendOne(tx, api.NewEvent(site.CreatedAt, api.EventSiteAdded, site.Name, api.SiteAdded{Tier: site.Tier, Lat: site.Lat, Lon: site.Lon}))
		return err
	})
	return site, ev, err
}

// RemoveSite removes a site; one with live nodes only with force, which revokes them, each with
// its own event, before the site's.
func (s *Service) RemoveSite(ctx context.Context, name string, force bool) ([]api.Event, error) {
	now := s.clk.Now().UTC()
	var evs []api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Site(name); err != nil {
			return err
		}
		live, err := tx.SiteNodes(name)
		if err != nil {
			return err
		}
		if len(live) > 0 && !force {
			return fault.Conflict("site %q has %d node(s); remove them first or use --force", name, len(live))
		}
		if err := tx.DeleteSite(name); err != nil {
			return err
		}
		for _, n := range live {
			evs = append(evs, api.NewEvent(now, api.EventNodeRevoked, n, api.NodeRevoked{Site: name, Reason: "site removed"}))
		}
		evs = append(evs, api.NewEvent(now, api.EventSiteRemoved, name, api.SiteRemoved{NodesRevoked: len(live)}))
		if evs, err = tx.AppendEvents(evs...); err != nil {
			return err
		}
		more, err := s.removed(tx, live, now)
		evs = append(evs, more...)
		return err
	})
	return evs, err
}

// LabelSite applies a label change to a site, under the rules of a node's labels (the same keys
// and values; site and tier are implicit and cannot be set; at most labels.MaxLabels). Every
// node of the site carries the site's labels under its own (Labels), so the change moves which
// nodes selectors match; it redeploys nothing. Only the nodes whose operator checks it changes
// (a check's selector matches them now and did not, or the reverse) get a new generation, named
// in the event. It returns the site as changed and a site.labeled event, none when its labels
// did not move.
func (s *Service) LabelSite(ctx context.Context, name string, c api.LabelChange) (api.Site, []api.Event, error) {
	if c.Selector != "" {
		return api.Site{}, nil, fault.Invalid("selector is not used when labelling a site")
	}
	if err := CheckChange(c); err != nil {
		return api.Site{}, nil, err
	}
	now := s.clk.Now().UTC()
	var site api.Site
	var evs []api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if site, err = tx.Site(name); errors.Is(err, store.ErrNotFound) {
			return fault.NotFound("site %q not found", name)
		} else if err != nil {
			return err
		}
		m, err := applyChange("site "+name, site.Labels, c.Set, c.Remove)
		if err != nil || maps.Equal(m, site.Labels) {
			return err
		}
		if err := tx.SetSiteLabels(name, m); err != nil {
			return err
		}
		moved, err := checksMoved(tx, site, m)
		if err != nil {
			return err
		}
		if err := tx.BumpGenerations(moved); err != nil {
			return err
		}
		set, removed := labelDiff(site.Labels, m)
		evs, err = tx.AppendEvents(api.NewEvent(now, api.EventSiteLabeled, name, api.SiteLabeled{Set: set, Removed: removed, Labels: m, Nodes: moved}))
		return err
	})
	if err != nil {
		return api.Site{}, nil, err
	}
	site, err = s.store.Site(ctx, name)
	return site, evs, err
}

// checksMoved names, sorted, the nodes of site whose operator checks change when the site's
// labels become to: those that some check's selector matches under one label set and not the
// other.
func checksMoved(tx store.Tx, site api.Site, to map[string]string) ([]string, error) {
	checks, err := tx.Checks()
	if err != nil || len(checks) == 0 {
		return nil, err
	}
	var sels []labels.Selector
	for _, c := range checks {
		if sel, err := labels.ParseSelector(c.Selector); err == nil {
			sels = append(sels, sel)
		}
	}
	names, err := tx.SiteNodes(site.Name)
	if err != nil {
		return nil, err
	}
	nodes, err := tx.Nodes(names)
	if err != nil {
		return nil, err
	}
	var moved []string
	for _, name := range names {
		n := nodes[name]
		n.Site, n.Tier = site.Name, site.Tier
		before, after := n, n
		before.SiteLabels, after.SiteLabels = site.Labels, to
		for _, sel := range sels {
			if sel.Matches(Labels(before)) != sel.Matches(Labels(after)) {
				moved = append(moved, name)
				break
			}
		}
	}
	return moved, nil
}

// applyChange returns have with set and remove applied, refusing a change that would leave what
// (a node or site, named) with more than labels.MaxLabels labels; one already over the bound
// may still shrink. It is checked on the merged set inside the transaction, so concurrent
// changes cannot pass the bound together.
func applyChange(what string, have, set map[string]string, remove []string) (map[string]string, error) {
	m := make(map[string]string, len(have)+len(set))
	maps.Copy(m, have)
	maps.Copy(m, set)
	for _, k := range remove {
		delete(m, k)
	}
	if len(m) > labels.MaxLabels && len(m) > len(have) {
		return nil, fault.Conflict("%s would carry %d labels; at most %d", what, len(m), labels.MaxLabels)
	}
	return m, nil
}

// labelDiff says how after differs from before: the labels it sets anew or to another value,
// and the keys it drops, sorted.
func labelDiff(before, after map[string]string) (set map[string]string, removed []string) {
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			if set == nil {
				set = map[string]string{}
			}
			set[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			removed = append(removed, k)
		}
	}
	sort.Strings(removed)
	return set, removed
}

// CreateToken stores a token made by the caller (who keeps its secret; the record holds its
// hash).
func (s *Service) CreateToken(ctx context.Context, t store.TokenRecord) (api.Event, error) {
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertToken(t); err != nil {
			return err
		}
		var err error
		ev, err = store.AppendOne(tx, api.NewEvent(t.CreatedAt, api.EventTokenCreated, t.ID, api.TokenCreated{Kind: t.Kind, Site: t.Site, Role: t.Role}))
		return err
	})
	return ev, err
}

// CreateTokenUnless stores a token made by the caller unless a token that have says it has is
// stored already, which it returns instead. The look and the write are one transaction: of
// replicas starting together, one makes the token and the others find it.
func (s *Service) CreateTokenUnless(ctx context.Context, t store.TokenRecord, have func(store.TokenRecord) bool) (*store.TokenRecord, api.Event, error) {
	var found *store.TokenRecord
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		toks, err := tx.Tokens()
		if err != nil {
			return err
		}
		for _, old := range toks {
			if have(old) {
				found = &old
				return nil
			}
		}
		if err := tx.InsertToken(t); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(t.CreatedAt, api.EventTokenCreated, t.ID, api.TokenCreated{Kind: t.Kind, Site: t.Site, Role: t.Role}))
		return err
	})
	return found, ev, err
}

// RevokeToken revokes a token: it no longer authenticates anything.
func (s *Service) RevokeToken(ctx context.Context, id string) (api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteToken(id); err != nil {
			return err
		}
		var err error
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventTokenRevoked, id, nil))
		return err
	})
	return ev, err
}

// errBadEnrollToken is what an enrollment with an unknown, revoked or mistyped token gets: the
// same for each, so it tells a guesser nothing.
var errBadEnrollToken = fault.Unauthorized("enrollment token unknown or revoked")

// Enroll spends one use of an enrollment token, given as its id and the hash of its secret, and
// records the node in the token's site, up. A name held by a revoked node is taken over; one
// held by an enrolled node, or a public key already enrolled, is refused.
func (s *Service) Enroll(ctx context.Context, tokenID, secretHash string, n store.NodeRecord) (api.Node, api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		t, err := tx.Token(tokenID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return errBadEnrollToken
		case err != nil:
			return err
		case subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(secretHash)) != 1 || t.Kind != store.KindEnroll:
			return errBadEnrollToken
		case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
			return fault.Unauthorized("enrollment token expired at %s; create a new one", t.ExpiresAt.Format(time.RFC3339))
		case t.UsesLeft != nil && *t.UsesLeft <= 0:
			return fault.Unauthorized("enrollment token is used up; create a new one")
		}
		if holder, err := tx.NodeWithKey(n.PublicKey); err == nil && holder != n.Name {
			return fault.Conflict("this public key is already enrolled")
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.InsertNode(t.Site, n, now); errors.Is(err, store.ErrExists) {
			return fault.Conflict("node name %q is taken by an enrolled node; pick another --name or remove it first", n.Name)
		} else if err != nil {
			return err
		}
		if err := tx.SpendToken(t.ID); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventNodeEnrolled, n.Name, api.NodeEnrolled{Site: t.Site, Token: t.ID}))
		return err
	})
	if err != nil {
		return api.Node{}, ev, err
	}
	node, err := s.store.Node(ctx, n.Name)
	return node, ev, err
}

// SetStatus moves a node between up and down; it changes nothing, and returns no event, when the
// node already has that status or is revoked.
func (s *Service) SetStatus(ctx context.Context, name, status string) (api.Event, bool, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		nodes, err := tx.Nodes([]string{name})
		if err != nil {
			return err
		}
		n, ok := nodes[name]
		if !ok {
			return fault.NotFound("node %q not found", name)
		}
		if n.Status == status || n.Status == api.StatusRevoked {
			return nil
		}
		if err := tx.SetNodeStatus(name, status); err != nil {
			return err
		}
		typ := api.EventNodeUp
		if status == api.StatusDown {
			typ = api.EventNodeDown
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, typ, name, api.NodeStatusChanged{From: n.Status}))
		return err
	})
	return ev, ev.ID != 0, err
}

// Query selects nodes: revoked ones only when Status asks for them.
type Query struct {
	Site     string
	Status   string // "", up, down or revoked
	Selector string // labels.ParseSelector syntax; "" selects all
}

// Select returns the nodes the query selects, by name.
func (s *Service) Select(ctx context.Context, q Query) ([]api.Node, error) {
	sel, err := labels.ParseSelector(q.Selector)
	if err != nil {
		return nil, fault.Invalid("%v", err)
	}
	switch q.Status {
	case "", api.StatusUp, api.StatusDown, api.StatusRevoked:
	default:
		return nil, fault.Invalid("invalid status %q: want up, down or revoked", q.Status)
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Node{}
	for _, n := range nodes {
		if (q.Status == "" && n.Status == api.StatusRevoked) || (q.Status != "" && n.Status != q.Status) {
			continue
		}
		if q.Site != "" && n.Site != q.Site {
			continue
		}
		if sel.Matches(Labels(n)) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Labels returns the labels a selector sees on a node: its site's labels, then its own over
// them (a node's own label wins over its site's of the same key), then the implicit site and
// tier, which neither can set. Every selection of nodes goes through it.
func Labels(n api.Node) labels.Set {
	l := make(labels.Set, len(n.SiteLabels)+len(n.Labels)+2)
	maps.Copy(l, n.SiteLabels)
	maps.Copy(l, n.Labels)
	l[labels.KeySite], l[labels.KeyTier] = n.Site, strconv.Itoa(n.Tier)
	return l
}

// CheckChange validates a label change.
func CheckChange(c api.LabelChange) error {
	if len(c.Set) == 0 && len(c.Remove) == 0 {
		return fault.Invalid("nothing to change: give key=value to set or key- to remove")
	}
	if err := labels.Set(c.Set).Validate(); err != nil {
		return fault.Invalid("%v", err)
	}
	for _, k := range c.Remove {
		if err := labels.CheckName("label key", k); err != nil {
			return fault.Invalid("%v", err)
		}
		if _, both := c.Set[k]; both {
			return fault.Invalid("label %q is both set and removed", k)
		}
	}
	return nil
}

// LabelNode applies a label change to one node.
func (s *Service) LabelNode(ctx context.Context, name string, c api.LabelChange) (api.LabelResult, []api.Event, error) {
	if c.Selector != "" {
		return api.LabelResult{}, nil, fault.Invalid("selector is not used when labelling one node")
	}
	if err := CheckChange(c); err != nil {
		return api.LabelResult{}, nil, err
	}
	return s.label(ctx, []string{name}, c)
}

// LabelSelected applies a label change to every node the change's selector matches.
func (s *Service) LabelSelected(ctx context.Context, c api.LabelChange) (api.LabelResult, []api.Event, error) {
	if c.Selector == "" {
		return api.LabelResult{}, nil, fault.Invalid("a selector is required to label many nodes; the selector \"site\" matches every node")
	}
	if err := CheckChange(c); err != nil {
		return api.LabelResult{}, nil, err
	}
	sel, err := labels.ParseSelector(c.Selector)
	if err != nil {
		return api.LabelResult{}, nil, fault.Invalid("%v", err)
	}
	// The nodes are read once, inside the change's transaction, and selected there.
	_, evs, err := s.changeLabels(ctx, func(tx store.Tx) ([]string, map[string]api.Node, error) {
		all, err := tx.Nodes(nil)
		if err != nil {
			return nil, nil, err
		}
		var names []string
		for name, n := range all {
			if n.Status != api.StatusRevoked && sel.Matches(Labels(n)) {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		return names, all, nil
	}, c.Set, c.Remove)
	return labelResult(evs, err)
}

func (s *Service) label(ctx context.Context, names []string, c api.LabelChange) (api.LabelResult, []api.Event, error) {
	_, evs, err := s.ChangeLabels(ctx, names, c.Set, c.Remove)
	return labelResult(evs, err)
}

// labelResult is what a label change answers: the nodes it changed.
func labelResult(evs []api.Event, err error) (api.LabelResult, []api.Event, error) {
	if err != nil {
		return api.LabelResult{}, nil, err
	}
	res := api.LabelResult{Nodes: []string{}}
	for _, e := range evs {
		res.Nodes = append(res.Nodes, e.Subject)
	}
	return res, evs, nil
}

// ChangeLabels applies set and remove to each named node (every one must exist and not be
// revoked) and returns the nodes it changed, with their new labels and generation (not their
// assignments), and a node.labeled event for each. A change that would leave a node with more
// than labels.MaxLabels labels fails whole (applyChange). However many nodes it changes, it
// costs a handful of statements.
func (s *Service) ChangeLabels(ctx context.Context, names []string, set map[string]string, remove []string) ([]api.Node, []api.Event, error) {
	return s.changeLabels(ctx, func(tx store.Tx) ([]string, map[string]api.Node, error) {
		found, err := tx.Nodes(names)
		return names, found, err
	}, set, remove)
}

// changeLabels is ChangeLabels on the nodes pick names, from those it read.
func (s *Service) changeLabels(ctx context.Context, pick func(tx store.Tx) ([]string, map[string]api.Node, error), set map[string]string, remove []string) ([]api.Node, []api.Event, error) {
	now := s.clk.Now().UTC()
	var changed []api.Node
	var evs []api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		changed, evs = nil, nil
		names, found, err := pick(tx)
		if err != nil {
			return err
		}
		updates := map[string]map[string]string{}
		for _, name := range names {
			n, ok := found[name]
			if !ok || n.Status == api.StatusRevoked {
				return fault.NotFound("node %q not found", name)
			}
			if _, done := updates[name]; done {
				continue
			}
			m, err := applyChange("node "+name, n.Labels, set, remove)
			if err != nil {
				return err
			}
			if maps.Equal(m, n.Labels) {
				continue
			}
			updates[name] = m
			evs = append(evs, api.NewEvent(now, api.EventNodeLabeled, name, api.NodeLabeled{Labels: m, Generation: n.Generation + 1}))
			n.Labels, n.Generation = m, n.Generation+1
			changed = append(changed, n)
		}
		if len(updates) == 0 {
			return nil
		}
		if err := tx.SetLabels(updates); err != nil {
			return err
		}
		evs, err = tx.AppendEvents(evs...)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return changed, evs, nil
}

// RemoveNode revokes a node: its sessions end and its name may enroll again with a new key.
func (s *Service) RemoveNode(ctx context.Context, name string) (api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		nodes, err := tx.Nodes([]string{name})
		if err != nil {
			return err
		}
		if n, ok := nodes[name]; !ok || n.Status == api.StatusRevoked {
			return fault.NotFound("node %q not found", name)
		}
		if err := tx.SetNodeStatus(name, api.StatusRevoked); err != nil {
			return err
		}
		if ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventNodeRevoked, name, nil)); err != nil {
			return err
		}
		_, err = s.removed(tx, []string{name}, now)
		return err
	})
	return ev, err
}

func (s *Service) removed(tx store.Tx, nodes []string, at time.Time) ([]api.Event, error) {
	if s.Removed == nil || len(nodes) == 0 {
		return nil, nil
	}
	return s.Removed(tx, nodes, at)
}
