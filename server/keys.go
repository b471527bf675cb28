package server

import (
	"fmt"
	"net/http"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/signing"
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
	pub, err := signing.ParsePublicKey(req.PublicKey)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if len(req.Comment) > 200 {
		return errorf(http.StatusBadRequest, "comment longer than 200 characters")
	}
	k := api.SigningKey{ID: fmt.Sprintf("%016X", pub.ID()), PublicKey: pub.String(), Comment: req.Comment, CreatedAt: s.clk.Now().UTC()}
	ev, err := s.store.TrustKey(r.Context(), k)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, k)
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	ev, err := s.store.RevokeKey(r.Context(), r.PathValue("id"), s.clk.Now())
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
