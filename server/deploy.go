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
	out := api.Deployed{Release: app + "@" + ver, DryRun: req.DryRun, Nodes: []string{}, Unchanged: []string{}, Matched: len(nodes)}
	if req.DryRun {
		for _, n := range nodes {
			if a := assigned(n, app); a.Version == ver && a.Channel == req.Channel {
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
	if err := s.rollouts.Holding(r.Context(), app, names); err != nil {
		return err
	}
	var changed []string
	var ev api.Event
	if req.Channel != "" {
		// The candidate may have moved since checkDeploy read it: the answer names the one
		// the nodes follow now.
		ver, changed, ev, err = s.assign.Follow(r.Context(), names, app, req.Channel)
		out.Release = app + "@" + ver
	} else {
		changed, ev, err = s.assign.Assign(r.Context(), names, app, ver)
	}
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
	if req.Selector == "" {
		return "", "", nil, errorf(http.StatusBadRequest, "a selector is required; the selector \"site\" matches every node")
	}
	if req.Channel != "" {
		if app, ver, err = s.checkFollow(r, req); err != nil {
			return "", "", nil, err
		}
	} else {
		var ok bool
		app, ver, ok = strings.Cut(req.Release, "@")
		if !ok || app == "" || ver == "" {
			return "", "", nil, errorf(http.StatusBadRequest, "release must be APP@VERSION, got %q", req.Release)
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
	}
	nodes, err = s.matchNodes(r, req.Selector, "deployed")
	return app, ver, nodes, err
}

// checkFollow checks a deploy that makes nodes follow a channel: the release names the app
// alone, the channel exists and holds a release of it. It returns the app and the channel's
// candidate.
func (s *Server) checkFollow(r *http.Request, req api.Deploy) (app, ver string, err error) {
	if strings.Contains(req.Release, "@") {
		return "", "", errorf(http.StatusBadRequest, "a deploy that follows a channel names the app alone (%s), not a version", strings.SplitN(req.Release, "@", 2)[0])
	}
	if err := labels.CheckName("app name", req.Release); err != nil {
		return "", "", errorf(http.StatusBadRequest, "%v", err)
	}
	c, err := s.catalog.Channel(r.Context(), req.Channel, false)
	if err != nil {
		return "", "", err
	}
	if ver = c.Candidates[req.Release]; ver == "" {
		return "", "", errorf(http.StatusConflict, "channel %s holds no release of %s; push or promote one into it first", req.Channel, req.Release)
	}
	return req.Release, ver, nil
}

// matchNodes returns the nodes a deploy's or undeploy's selector matches; none is a conflict
// whose message says why, with what (deployed, undeployed) did not happen.
func (s *Server) matchNodes(r *http.Request, selector, what string) ([]api.Node, error) {
	if selector == "" {
		return nil, errorf(http.StatusBadRequest, "a selector is required; the selector \"site\" matches every node")
	}
	if _, err := labels.ParseSelector(selector); err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	nodes, err := s.selectNodes(r.Context(), inventory.Query{Selector: selector})
	if err != nil || len(nodes) > 0 {
		return nodes, err
	}
	all, err := s.selectNodes(r.Context(), inventory.Query{})
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errorf(http.StatusConflict, "no node has enrolled yet; nothing %s", what)
	}
	return nil, errorf(http.StatusConflict, "no node matches the selector %s; nothing %s (ferry node list shows the nodes and their labels)", labels.Quote(selector), what)
}

// undeploy takes an app off every node a selector matches. A dry run answers which nodes have
// it assigned, writing nothing.
func (s *Server) undeploy(w http.ResponseWriter, r *http.Request) error {
	var req api.Undeploy
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := labels.CheckName("app name", req.App); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	nodes, err := s.matchNodes(r, req.Selector, "undeployed")
	if err != nil {
		return err
	}
	out := api.Undeployed{App: req.App, DryRun: req.DryRun, Nodes: []string{}, Matched: len(nodes)}
	var names []string
	for _, n := range nodes {
		if assigned(n, req.App).App != "" {
			names = append(names, n.Name)
		}
	}
	if req.DryRun || len(names) == 0 {
		out.Nodes = append(out.Nodes, names...)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	if err := s.rollouts.Holding(r.Context(), req.App, names); err != nil {
		return err
	}
	changed, ev, err := s.assign.Unassign(r.Context(), names, req.App)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		s.settle(r.Context(), ev)
	}
	out.Nodes, out.EventID = append(out.Nodes, changed...), ev.ID
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxControlNodes bounds the nodes one app action names: the CLI names a window of them.
const maxControlNodes = 10000

// controlApp stops, starts or restarts an app on the named nodes.
func (s *Server) controlApp(w http.ResponseWriter, r *http.Request) error {
	var req api.AppControl
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := labels.CheckName("app name", req.App); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if len(req.Nodes) == 0 || len(req.Nodes) > maxControlNodes {
		return errorf(http.StatusBadRequest, "name 1 to %d nodes", maxControlNodes)
	}
	changed, ev, err := s.assign.Control(r.Context(), req.Nodes, req.App, req.Action)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		s.settle(r.Context(), ev)
	}
	writeJSON(w, http.StatusOK, api.AppControlled{Nodes: append([]string{}, changed...), EventID: ev.ID})
	return nil
}

// assigned is node n's assignment of app; its App is empty when there is none.
func assigned(n api.Node, app string) api.Assignment {
	for _, a := range n.Assigned {
		if a.App == app {
			return a
		}
	}
	return api.Assignment{}
}
