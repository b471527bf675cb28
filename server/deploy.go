package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/ferryhq/ferry/api"
)

// deploy assigns a release to every node a selector matches, at once (no waves): each matched
// node's desired state gets the release and its held sync wakes, so agents start installing
// within milliseconds. Nodes already assigned the release are left alone.
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var req api.Deploy
	if err := decode(w, r, &req); err != nil {
		return err
	}
	app, ver, ok := strings.Cut(req.Release, "@")
	if !ok || app == "" || ver == "" {
		return errorf(http.StatusBadRequest, "release must be APP@VERSION, got %q", req.Release)
	}
	if req.Selector == "" {
		return errorf(http.StatusBadRequest, "a selector is required; the selector \"site\" matches every node")
	}
	nodes, err := s.selectNodes(r, "", "", req.Selector)
	if err != nil {
		return err
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	changed, ev, err := s.store.Assign(r.Context(), names, app, ver, s.clk.Now().UTC())
	if err != nil {
		return err
	}
	if err := s.refreshNodes(r.Context(), changed); err != nil {
		return err
	}
	if len(changed) > 0 {
		s.published(ev)
	}
	if changed == nil {
		changed = []string{}
	}
	writeJSON(w, http.StatusOK, api.Deployed{Release: req.Release, Nodes: changed, EventID: ev.ID})
	return nil
}

// refreshNodes reloads the named nodes from the store into the hub, waking their held syncs.
func (s *Server) refreshNodes(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if want[n.Name] {
			s.hub.put(n)
		}
	}
	return nil
}
