package server

import (
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
	if len(changed) > 0 {
		s.settle(r.Context(), ev)
	}
	if changed == nil {
		changed = []string{}
	}
	writeJSON(w, http.StatusOK, api.Deployed{Release: req.Release, Nodes: changed, EventID: ev.ID})
	return nil
}
