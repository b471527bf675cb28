package server

import (
	"context"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/health"
	"github.com/ferryhq/ferry/inventory"
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
	if err := s.siteHealth(r.Context(), sites); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sites)
	return nil
}

func (s *Server) showSite(w http.ResponseWriter, r *http.Request) error {
	site, err := s.store.Site(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	sites := []api.Site{site}
	if err := s.siteHealth(r.Context(), sites); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sites[0])
	return nil
}

// siteHealth fills the sites' Health from their nodes'.
func (s *Server) siteHealth(ctx context.Context, sites []api.Site) error {
	nodes, err := s.healthyNodes(ctx, inventory.Query{})
	if err != nil {
		return err
	}
	health.AnnotateSites(sites, nodes)
	return nil
}

func (s *Server) addSite(w http.ResponseWriter, r *http.Request) error {
	var req api.SiteAdd
	if err := decode(w, r, &req); err != nil {
		return err
	}
	site, ev, err := s.inventory.AddSite(r.Context(), req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, site)
	return nil
}

func (s *Server) removeSite(w http.ResponseWriter, r *http.Request) error {
	force := r.URL.Query().Get("force") == "true"
	evs, err := s.inventory.RemoveSite(r.Context(), r.PathValue("name"), force)
	if err != nil {
		return err
	}
	s.settle(r.Context(), evs...)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// labelSite changes a site's labels and answers with the site as changed. Its nodes' desired
// state does not change, so no agent hears of it; selectors see it at once.
func (s *Server) labelSite(w http.ResponseWriter, r *http.Request) error {
	var c api.LabelChange
	if err := decode(w, r, &c); err != nil {
		return err
	}
	site, evs, err := s.inventory.LabelSite(r.Context(), r.PathValue("name"), c)
	if err != nil {
		return err
	}
	s.settle(r.Context(), evs...)
	writeJSON(w, http.StatusOK, site)
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
	ev, err := s.inventory.CreateToken(r.Context(), rec)
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
	ev, err := s.inventory.RevokeToken(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// selectNodes returns the nodes the query selects, with the detector's last-seen times.
func (s *Server) selectNodes(ctx context.Context, q inventory.Query) ([]api.Node, error) {
	nodes, err := s.inventory.Select(ctx, q)
	for i := range nodes {
		nodes[i] = s.fresh(nodes[i])
	}
	return nodes, err
}

// healthyNodes is selectNodes with each node's Health.
func (s *Server) healthyNodes(ctx context.Context, q inventory.Query) ([]api.Node, error) {
	nodes, err := s.selectNodes(ctx, q)
	if err != nil {
		return nil, err
	}
	return nodes, s.health.Annotate(ctx, nodes)
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
	nodes, err := s.healthyNodes(r.Context(), inventory.Query{Site: q.Get("site"), Status: q.Get("status"), Selector: q.Get("selector")})
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
	nodes := []api.Node{s.fresh(n)}
	if err := s.health.Annotate(r.Context(), nodes); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nodes[0])
	return nil
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	ev, err := s.inventory.RemoveNode(r.Context(), name)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) labelNode(w http.ResponseWriter, r *http.Request) error {
	var c api.LabelChange
	if err := decode(w, r, &c); err != nil {
		return err
	}
	res, evs, err := s.inventory.LabelNode(r.Context(), r.PathValue("name"), c)
	return s.labelled(w, r, res, evs, err)
}

func (s *Server) labelNodes(w http.ResponseWriter, r *http.Request) error {
	var c api.LabelChange
	if err := decode(w, r, &c); err != nil {
		return err
	}
	res, evs, err := s.inventory.LabelSelected(r.Context(), c)
	return s.labelled(w, r, res, evs, err)
}

func (s *Server) labelled(w http.ResponseWriter, r *http.Request, res api.LabelResult, evs []api.Event, err error) error {
	if err != nil {
		return err
	}
	s.settle(r.Context(), evs...)
	writeJSON(w, http.StatusOK, res)
	return nil
}
