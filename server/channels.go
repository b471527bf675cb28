package server

import (
	"net/http"

	"github.com/ferryhq/ferry/api"
)

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) error {
	chans, err := s.catalog.Channels(r.Context(), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, chans)
	return nil
}

func (s *Server) showChannel(w http.ResponseWriter, r *http.Request) error {
	return s.writeChannel(w, r, r.PathValue("name"), true, http.StatusOK)
}

// writeChannel answers with one channel, its candidates and, when asked, its history.
func (s *Server) writeChannel(w http.ResponseWriter, r *http.Request, name string, history bool, code int) error {
	c, err := s.catalog.Channel(r.Context(), name, history)
	if err != nil {
		return err
	}
	writeJSON(w, code, c)
	return nil
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) error {
	var req api.ChannelCreate
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ev, err := s.catalog.CreateChannel(r.Context(), req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	return s.writeChannel(w, r, req.Name, false, http.StatusCreated)
}

func (s *Server) setChannel(w http.ResponseWriter, r *http.Request) error {
	var req api.ChannelSet
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.AllowUnsigned == nil {
		return errorf(http.StatusBadRequest, "nothing to change: give allow_unsigned")
	}
	name := r.PathValue("name")
	ev, err := s.catalog.SetAllowUnsigned(r.Context(), name, *req.AllowUnsigned)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	return s.writeChannel(w, r, name, false, http.StatusOK)
}

func (s *Server) promoteRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.Promote
	if err := decode(w, r, &req); err != nil {
		return err
	}
	app, ver := r.PathValue("app"), r.PathValue("version")
	ev, err := s.catalog.Promote(r.Context(), app, ver, req.To, req.Force)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	return s.writeRelease(w, r, app, ver)
}

func (s *Server) withdrawRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.Withdraw
	if err := decode(w, r, &req); err != nil {
		return err
	}
	app, ver := r.PathValue("app"), r.PathValue("version")
	ev, err := s.catalog.Withdraw(r.Context(), app, ver, req.Reason)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	return s.writeRelease(w, r, app, ver)
}

// republishRelease is "downgrade by upgrading": the old content under EPOCH:VERSION, higher
// than anything with a lower epoch, without uploading the bundle again.
func (s *Server) republishRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.Republish
	if err := decode(w, r, &req); err != nil {
		return err
	}
	rel, ev, err := s.catalog.Republish(r.Context(), r.PathValue("app"), r.PathValue("version"), req.Epoch)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, rel)
	return nil
}

func (s *Server) writeRelease(w http.ResponseWriter, r *http.Request, app, ver string) error {
	rel, err := s.store.Release(r.Context(), app, ver)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

// bulletin is the release bulletin: per app, each channel's candidate and, per site, how many
// nodes run which version; with ?runs=APP@VER, the sites that run it.
func (s *Server) bulletin(w http.ResponseWriter, r *http.Request) error {
	b, err := s.catalog.Bulletin(r.Context(), r.URL.Query().Get("app"), r.URL.Query().Get("runs"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}
