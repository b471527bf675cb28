package server

import (
	"net/http"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
)

// deploy assigns a release to every node a selector matches, at once (no waves): each matched
// node's desired state gets the release and its held sync wakes, so agents start installing
// within milliseconds. Nodes already assigned the release are left alone. A dry run makes the
// same checks and answers which nodes the deploy would change, writing nothing.
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var req api.Deploy
	if err := decode(w, r, &req); err != nil {
		return err
	}
	app, ver, nodes, err := s.checkDeploy(r, req)
	if err != nil {
		return err
	}
	out := api.Deployed{Release: req.Release, DryRun: req.DryRun, Nodes: []string{}, Unchanged: []string{}, Matched: len(nodes)}
	if req.DryRun {
		for _, n := range nodes {
			if assigned(n, app) == ver {
				out.Unchanged = append(out.Unchanged, n.Name)
			} else {
				out.Nodes = append(out.Nodes, n.Name)
			}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	changed, ev, err := s.assign.Assign(r.Context(), names, app, ver)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		s.settle(r.Context(), ev)
	}
	isChanged := make(map[string]bool, len(changed))
	for _, n := range changed {
		isChanged[n] = true
	}
	for _, n := range names {
		if isChanged[n] {
			out.Nodes = append(out.Nodes, n)
		} else {
			out.Unchanged = append(out.Unchanged, n)
		}
	}
	out.EventID = ev.ID
	writeJSON(w, http.StatusOK, out)
	return nil
}

// checkDeploy makes every check of a deploy, in the order a caller mends them: the request's
// form, the release (it exists and is not withdrawn), then the nodes, of which the selector
// must match at least one. It returns the release's app and version and the matching nodes.
func (s *Server) checkDeploy(r *http.Request, req api.Deploy) (app, ver string, nodes []api.Node, err error) {
	app, ver, ok := strings.Cut(req.Release, "@")
	if !ok || app == "" || ver == "" {
		return "", "", nil, errorf(http.StatusBadRequest, "release must be APP@VERSION, got %q", req.Release)
	}
	if req.Selector == "" {
		return "", "", nil, errorf(http.StatusBadRequest, "a selector is required; the selector \"site\" matches every node")
	}
	if _, err := labels.ParseSelector(req.Selector); err != nil {
		return "", "", nil, errorf(http.StatusBadRequest, "%v", err)
	}
	rel, err := s.store.Release(r.Context(), app, ver)
	if err != nil {
		return "", "", nil, err
	}
	if rel.Withdrawn != "" {
		return "", "", nil, errorf(http.StatusConflict, "release %s is withdrawn (reason: %s); deploy another version", req.Release, rel.Withdrawn)
	}
	if nodes, err = s.selectNodes(r.Context(), inventory.Query{Selector: req.Selector}); err != nil {
		return "", "", nil, err
	}
	if len(nodes) > 0 {
		return app, ver, nodes, nil
	}
	all, err := s.selectNodes(r.Context(), inventory.Query{})
	if err != nil {
		return "", "", nil, err
	}
	if len(all) == 0 {
		return "", "", nil, errorf(http.StatusConflict, "no node has enrolled yet; nothing deployed")
	}
	return "", "", nil, errorf(http.StatusConflict, "no node matches the selector %s; nothing deployed (ferry node list shows the nodes and their labels)", labels.Quote(req.Selector))
}

// assigned is the version of app assigned to node n, or "".
func assigned(n api.Node, app string) string {
	for _, a := range n.Assigned {
		if a.App == app {
			return a.Version
		}
	}
	return ""
}
