package server

import (
	"net/http"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/rollout"
)

// rehearseRequest checks a rehearsal request and turns it into the service's: the rollout, as
// for a plan, and how the simulated fleet behaves.
func rehearseRequest(req api.RolloutRehearse) (rollout.Request, rollout.RehearseOptions, error) {
	o := rollout.RehearseOptions{FailRate: req.FailRate, OfflineRate: req.OfflineRate, Seed: req.Seed, InstallTime: time.Duration(req.InstallTime)}
	if err := o.Check(); err != nil {
		return rollout.Request{}, o, fault.Invalid("%v", err)
	}
	rr, err := rolloutRequest(req.RolloutStart)
	return rr, o, err
}

// rehearseRollout says how a rollout would go on a simulated copy of today's fleet. It changes
// nothing, so a viewer may ask.
func (s *Server) rehearseRollout(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutRehearse
	if err := decode(w, r, &req); err != nil {
		return err
	}
	rr, o, err := rehearseRequest(req)
	if err != nil {
		return err
	}
	out, err := s.rollouts.Rehearse(r.Context(), rr, o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
