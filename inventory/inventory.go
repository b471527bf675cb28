// Package inventory is the service that keeps the fleet's inventory: sites, nodes, their labels,
// and which nodes a query selects. Its methods are plain Go calls with typed inputs and
// failures (package fault); each writes state and its events in one store transaction and
// returns the events, which reach everything else through the store's change feed.
package inventory

import (
	"context"
	"math"
	"strconv"

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
	ev, err := s.store.CreateSite(ctx, site)
	return site, ev, err
}

// RemoveSite removes a site; one with live nodes only with force, which revokes them.
func (s *Service) RemoveSite(ctx context.Context, name string, force bool) ([]api.Event, error) {
	return s.store.DeleteSite(ctx, name, force, s.clk.Now())
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

// Labels returns the labels a selector sees on a node: its own plus its implicit site and tier.
func Labels(n api.Node) labels.Set {
	l := labels.Set{labels.KeySite: n.Site, labels.KeyTier: strconv.Itoa(n.Tier)}
	for k, v := range n.Labels {
		l[k] = v
	}
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
	nodes, err := s.Select(ctx, Query{Selector: c.Selector})
	if err != nil {
		return api.LabelResult{}, nil, err
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return s.label(ctx, names, c)
}

func (s *Service) label(ctx context.Context, names []string, c api.LabelChange) (api.LabelResult, []api.Event, error) {
	nodes, evs, err := s.store.ChangeLabels(ctx, names, c.Set, c.Remove, s.clk.Now())
	if err != nil {
		return api.LabelResult{}, nil, err
	}
	res := api.LabelResult{Nodes: []string{}}
	for _, n := range nodes {
		res.Nodes = append(res.Nodes, n.Name)
	}
	return res, evs, nil
}

// RemoveNode revokes a node: its sessions end and its name may enroll again with a new key.
func (s *Service) RemoveNode(ctx context.Context, name string) (api.Event, error) {
	return s.store.RevokeNode(ctx, name, s.clk.Now())
}
