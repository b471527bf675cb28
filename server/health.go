package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
)

// Checks and alerts: operators read them as viewers and change them as admins.

func (s *Server) listChecks(w http.ResponseWriter, r *http.Request) error {
	checks, err := s.health.ListChecks(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, checks)
	return nil
}

func (s *Server) addCheck(w http.ResponseWriter, r *http.Request) error {
	var req api.CheckSpec
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c, ev, err := s.health.AddCheck(r.Context(), req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, c)
	return nil
}

func (s *Server) removeCheck(w http.ResponseWriter, r *http.Request) error {
	evs, err := s.health.RemoveCheck(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	s.settle(r.Context(), evs...)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// maxHistorySince is how far back a history query may reach: the hour buckets' retention.
const maxHistorySince = 30 * 24 * time.Hour

// checkHistory answers GET /v1/checks/{name}/history?node=N[&since=DURATION]: the check's
// buckets on the node (APP%2FNAME names a manifest's check), of the last day by default.
func (s *Server) checkHistory(w http.ResponseWriter, r *http.Request) error {
	check, node := r.PathValue("name"), r.URL.Query().Get("node")
	if err := labels.CheckName("node name", node); err != nil {
		return errorf(http.StatusBadRequest, "%v; give ?node=NAME", err)
	}
	if len(check) > 2*labels.MaxNameLen+1 || strings.Count(check, "/") > 1 {
		return errorf(http.StatusBadRequest, "invalid check name %q", check)
	}
	since := 24 * time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxHistorySince {
			return errorf(http.StatusBadRequest, "since=%q: want a duration up to %s, e.g. 6h", v, maxHistorySince)
		}
		since = d
	}
	buckets, err := s.health.History(r.Context(), node, check, s.clk.Now().Add(-since))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, buckets)
	return nil
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) error {
	alerts, err := s.health.Alerts(r.Context(), r.URL.Query().Get("all") == "true")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, alerts)
	return nil
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errorf(http.StatusBadRequest, "invalid alert id %q: want the number ferry alert list shows", r.PathValue("id"))
	}
	var req api.AlertAck
	if err := decode(w, r, &req); err != nil {
		return err
	}
	a, ev, err := s.health.Ack(r.Context(), id, req.Comment)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusOK, a)
	return nil
}
