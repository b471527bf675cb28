package server

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

func (s *Server) listSites(w http.ResponseWriter, r *http.Request) error {
	sites, err := s.store.Sites(r.Context())
	if err != nil {
		return err
	}
	if sites == nil {
		sites = []api.Site{}
	}
	writeJSON(w, http.StatusOK, sites)
	return nil
}

func (s *Server) showSite(w http.ResponseWriter, r *http.Request) error {
	site, err := s.store.Site(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, site)
	return nil
}

func validateSite(a api.SiteAdd) error {
	if err := labels.CheckName("site name", a.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if a.Tier < 1 || a.Tier > 3 {
		return errorf(http.StatusBadRequest, "invalid tier %d: 1 runs a relay, 2 administers its own nodes, 3 lends nodes", a.Tier)
	}
	if (a.Lat == nil) != (a.Lon == nil) {
		return errorf(http.StatusBadRequest, "give both lat and lon, or neither")
	}
	if a.Lat != nil && (math.IsNaN(*a.Lat) || *a.Lat < -90 || *a.Lat > 90 || math.IsNaN(*a.Lon) || *a.Lon < -180 || *a.Lon > 180) {
		return errorf(http.StatusBadRequest, "invalid location %v,%v: lat must be within ±90 and lon within ±180", *a.Lat, *a.Lon)
	}
	if len(a.Contact) > 254 {
		return errorf(http.StatusBadRequest, "contact longer than 254 characters")
	}
	return nil
}

func (s *Server) addSite(w http.ResponseWriter, r *http.Request) error {
	var req api.SiteAdd
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := validateSite(req); err != nil {
		return err
	}
	site := api.Site{Name: req.Name, Tier: req.Tier, Lat: req.Lat, Lon: req.Lon, Contact: req.Contact, CreatedAt: s.clk.Now().UTC()}
	ev, err := s.store.CreateSite(r.Context(), site)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, site)
	return nil
}

func (s *Server) removeSite(w http.ResponseWriter, r *http.Request) error {
	force := r.URL.Query().Get("force") == "true"
	evs, err := s.store.DeleteSite(r.Context(), r.PathValue("name"), force, s.clk.Now())
	if err != nil {
		return err
	}
	s.settle(r.Context(), evs...)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func tokenJSON(t store.TokenRecord) api.Token {
	return api.Token{ID: t.ID, Kind: t.Kind, Site: t.Site, Role: t.Role, UsesLeft: t.UsesLeft,
		ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt, Description: t.Description}
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	toks, err := s.store.Tokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Token, 0, len(toks))
	for _, t := range toks {
		out = append(out, tokenJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Default lifetimes: an enrollment token is for a machine being set up today; an operator
// token lives until revoked unless a TTL is given.
const defaultEnrollTTL = 24 * time.Hour

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenCreate
	if err := decode(w, r, &req); err != nil {
		return err
	}
	now := s.clk.Now().UTC()
	rec := store.TokenRecord{CreatedAt: now, Description: req.Description}
	var prefix string
	switch {
	case req.Site != "" && req.Role != "":
		return errorf(http.StatusBadRequest, "give --site for an enrollment token or --role for an operator token, not both")
	case req.Site != "":
		if err := labels.CheckName("site name", req.Site); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		rec.Kind, rec.Site, prefix = store.KindEnroll, req.Site, prefixEnroll
		uses := 1
		if req.Uses != 0 {
			uses = req.Uses
		}
		if uses < 1 {
			return errorf(http.StatusBadRequest, "invalid uses %d: want 1 or more", req.Uses)
		}
		rec.UsesLeft = &uses
		exp := now.Add(defaultEnrollTTL)
		rec.ExpiresAt = &exp
	case req.Role == api.RoleAdmin || req.Role == api.RoleViewer:
		if req.Uses != 0 {
			return errorf(http.StatusBadRequest, "--uses applies to enrollment tokens only")
		}
		rec.Kind, rec.Role, prefix = store.KindOperator, req.Role, prefixOperator
	case req.Role != "":
		return errorf(http.StatusBadRequest, "invalid role %q: want admin or viewer", req.Role)
	default:
		return errorf(http.StatusBadRequest, "give --site for an enrollment token or --role for an operator token")
	}
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return errorf(http.StatusBadRequest, "invalid ttl %q: want a positive duration like 24h", req.TTL)
		}
		exp := now.Add(d)
		rec.ExpiresAt = &exp
	}
	secret, id, hash := newToken(prefix)
	rec.ID, rec.SecretHash = id, hash
	ev, err := s.store.CreateToken(r.Context(), rec)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	out := tokenJSON(rec)
	out.Secret = secret
	if rec.Kind == store.KindEnroll && s.CAPin != "" {
		// The agent given this token trusts exactly this server's CA (api.SplitEnrollToken).
		out.Secret += "." + s.CAPin
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	ev, err := s.store.DeleteToken(r.Context(), r.PathValue("id"), s.clk.Now())
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// withImplicit returns the node's labels plus its implicit site and tier.
func withImplicit(n api.Node) labels.Set {
	l := labels.Set{labels.KeySite: n.Site, labels.KeyTier: strconv.Itoa(n.Tier)}
	for k, v := range n.Labels {
		l[k] = v
	}
	return l
}

// selectNodes returns the live nodes matching the query's site, status and selector.
func (s *Server) selectNodes(r *http.Request, site, status, selector string) ([]api.Node, error) {
	sel, err := labels.ParseSelector(selector)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	switch status {
	case "", api.StatusUp, api.StatusDown, api.StatusRevoked:
	default:
		return nil, errorf(http.StatusBadRequest, "invalid status %q: want up, down or revoked", status)
	}
	nodes, err := s.store.Nodes(r.Context())
	if err != nil {
		return nil, err
	}
	out := []api.Node{}
	for _, n := range nodes {
		if (status == "" && n.Status == api.StatusRevoked) || (status != "" && n.Status != status) {
			continue
		}
		if site != "" && n.Site != site {
			continue
		}
		if !sel.Matches(withImplicit(n)) {
			continue
		}
		out = append(out, s.fresh(n))
	}
	return out, nil
}

// fresh overlays the detector's last-seen time, which the store gets only in batches.
func (s *Server) fresh(n api.Node) api.Node {
	if seen, ok := s.det.LastSeen(n.Name); ok && (n.LastSeen == nil || seen.After(*n.LastSeen)) {
		seen = seen.UTC()
		n.LastSeen = &seen
	}
	return n
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	nodes, err := s.selectNodes(r, q.Get("site"), q.Get("status"), q.Get("selector"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nodes)
	return nil
}

func (s *Server) showNode(w http.ResponseWriter, r *http.Request) error {
	n, err := s.store.Node(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.fresh(n))
	return nil
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	ev, err := s.store.RevokeNode(r.Context(), name, s.clk.Now())
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func validateChange(c api.LabelChange) error {
	if len(c.Set) == 0 && len(c.Remove) == 0 {
		return errorf(http.StatusBadRequest, "nothing to change: give key=value to set or key- to remove")
	}
	if err := labels.Set(c.Set).Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	for _, k := range c.Remove {
		if err := labels.CheckName("label key", k); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		if _, both := c.Set[k]; both {
			return errorf(http.StatusBadRequest, "label %q is both set and removed", k)
		}
	}
	return nil
}

func (s *Server) applyLabels(w http.ResponseWriter, r *http.Request, names []string, c api.LabelChange) error {
	nodes, evs, err := s.store.ChangeLabels(r.Context(), names, c.Set, c.Remove, s.clk.Now())
	if err != nil {
		return err
	}
	res := api.LabelResult{Nodes: []string{}}
	for _, n := range nodes {
		res.Nodes = append(res.Nodes, n.Name)
	}
	s.settle(r.Context(), evs...)
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) labelNode(w http.ResponseWriter, r *http.Request) error {
	var c api.LabelChange
	if err := decode(w, r, &c); err != nil {
		return err
	}
	if c.Selector != "" {
		return errorf(http.StatusBadRequest, "selector is not used when labelling one node")
	}
	if err := validateChange(c); err != nil {
		return err
	}
	return s.applyLabels(w, r, []string{r.PathValue("name")}, c)
}

func (s *Server) labelNodes(w http.ResponseWriter, r *http.Request) error {
	var c api.LabelChange
	if err := decode(w, r, &c); err != nil {
		return err
	}
	if c.Selector == "" {
		return errorf(http.StatusBadRequest, "a selector is required to label many nodes; the selector \"site\" matches every node")
	}
	if err := validateChange(c); err != nil {
		return err
	}
	nodes, err := s.selectNodes(r, "", "", c.Selector)
	if err != nil {
		return err
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	return s.applyLabels(w, r, names, c)
}
