package server

import (
	"net/http"

	"github.com/ferryhq/ferry/api"
)

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.store.Keys(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keys)
	return nil
}

func (s *Server) trustKey(w http.ResponseWriter, r *http.Request) error {
	var req api.KeyTrust
	if err := decode(w, r, &req); err != nil {
		return err
	}
	k, ev, err := s.catalog.TrustKey(r.Context(), req.PublicKey, req.Comment)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, k)
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	ev, err := s.catalog.RevokeKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
