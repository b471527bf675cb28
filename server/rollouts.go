package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/rollout"
)

// maxPolicyYAML bounds a policy file sent with a rollout.
const maxPolicyYAML = 64 << 10

// rolloutRequest checks a start or plan request and turns it into the service's.
func rolloutRequest(req api.RolloutStart) (rollout.Request, error) {
	if err := labels.CheckName("app name", req.App); err != nil {
		return rollout.Request{}, fault.Invalid("%v", err)
	}
	if req.Version == "" || len(req.Version) > 128 {
		return rollout.Request{}, fault.Invalid("give the version to roll out: APP@VERSION")
	}
	if _, err := labels.ParseSelector(req.Selector); err != nil {
		return rollout.Request{}, fault.Invalid("%v", err)
	}
	var pol *rollout.Policy
	var err error
	switch {
	case req.Policy != "" && req.PolicyYAML != "":
		return rollout.Request{}, fault.Invalid("give a policy name or a policy file, not both")
	case len(req.PolicyYAML) > maxPolicyYAML:
		return rollout.Request{}, fault.Invalid("policy file is %d bytes; at most %d", len(req.PolicyYAML), maxPolicyYAML)
	case req.PolicyYAML != "":
		pol, err = rollout.ParsePolicy("policy", []byte(req.PolicyYAML))
	case req.Policy != "":
		pol, err = rollout.Builtin(req.Policy)
	}
	if err != nil {
		return rollout.Request{}, fault.Invalid("%v", err)
	}
	if len(req.Set) > maxOverrides {
		return rollout.Request{}, fault.Invalid("%d overrides; at most %d", len(req.Set), maxOverrides)
	}
	if pol != nil {
		if err := override(pol, req.Set); err != nil {
			return rollout.Request{}, err
		}
	}
	resolve := func(rel api.Release, targets []rollout.Target) (string, rollout.Plan, error) {
		p := pol
		if p == nil {
			var err error
			if p, err = rollout.ForClass(rel.Class); err != nil {
				return "", rollout.Plan{}, fault.Invalid("%v", err)
			}
			if err := override(p, req.Set); err != nil {
				return "", rollout.Plan{}, err
			}
		}
		plan, err := p.Resolve(targets, rollout.DefaultsOf(updateOf(rel)))
		if err != nil {
			return "", rollout.Plan{}, fault.Invalid("%v", err)
		}
		return p.Name, plan, nil
	}
	return rollout.Request{App: req.App, Version: req.Version, Selector: req.Selector, Resolve: resolve}, nil
}

// maxOverrides bounds a request's --set overrides.
const maxOverrides = 64

// override applies --set overrides to p, each checked as a policy file's field is.
func override(p *rollout.Policy, set []string) error {
	for _, s := range set {
		if len(s) > 256 {
			return fault.Invalid("override %.40q… is longer than 256 bytes", s)
		}
		if err := p.Override(s); err != nil {
			return fault.Invalid("--set %s: %v", s, err)
		}
	}
	return nil
}

// updateOf reads the update block of a release's manifest; the zero value (the manifest's
// defaults) when it has none.
func updateOf(rel api.Release) release.Update {
	var m struct {
		Update release.Update `json:"update"`
	}
	if b, err := json.Marshal(rel.Manifest); err == nil {
		json.Unmarshal(b, &m)
	}
	return m.Update
}

func (s *Server) planRollout(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutStart
	if err := decode(w, r, &req); err != nil {
		return err
	}
	rr, err := rolloutRequest(req)
	if err != nil {
		return err
	}
	plan, err := s.rollouts.Plan(r.Context(), rr)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, plan)
	return nil
}

func (s *Server) startRollout(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutStart
	if err := decode(w, r, &req); err != nil {
		return err
	}
	rr, err := rolloutRequest(req)
	if err != nil {
		return err
	}
	ro, ev, err := s.rollouts.Start(r.Context(), rr)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, ro)
	return nil
}

func (s *Server) listRollouts(w http.ResponseWriter, r *http.Request) error {
	app := r.URL.Query().Get("app")
	if app != "" {
		if err := labels.CheckName("app name", app); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	out, err := s.rollouts.List(r.Context(), app)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// rolloutID reads the {id} of a rollout route.
func rolloutID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusBadRequest, "rollout id %q is not a positive number", r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) showRollout(w http.ResponseWriter, r *http.Request) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	last, err := s.store.LastEventID(r.Context()) // before the read: a change after it is newer
	if err != nil {
		return err
	}
	ro, err := s.rollouts.Get(r.Context(), id)
	if err != nil {
		return err
	}
	ro.LastEvent = last
	writeJSON(w, http.StatusOK, ro)
	return nil
}

func (s *Server) actOnRollout(w http.ResponseWriter, r *http.Request) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	action := r.PathValue("action")
	if !slices.Contains(rollout.Actions, action) {
		return errorf(http.StatusNotFound, "no rollout action %q", action)
	}
	var req api.RolloutAction
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Site != "" {
		if err := labels.CheckName("site name", req.Site); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	if (action == rollout.ActionAck || action == rollout.ActionReport) && req.Site == "" {
		return errorf(http.StatusBadRequest, "%s needs the site: --site NAME", action)
	}
	ro, ev, err := s.rollouts.Act(r.Context(), id, action, req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusOK, ro)
	return nil
}
