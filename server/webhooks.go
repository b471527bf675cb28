package server

import (
	"net/http"

	"github.com/ferryhq/ferry/api"
)

// Webhooks are admin-only, reading included: a webhook's URL often carries a receiver's own
// credential in its path.

func (s *Server) addWebhook(w http.ResponseWriter, r *http.Request) error {
	var req api.WebhookAdd
	if err := decode(w, r, &req); err != nil {
		return err
	}
	hook, ev, err := s.webhooks.Add(r.Context(), req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, hook)
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	hooks, err := s.webhooks.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, hooks)
	return nil
}

func (s *Server) removeWebhook(w http.ResponseWriter, r *http.Request) error {
	ev, err := s.webhooks.Remove(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) webhookFailures(w http.ResponseWriter, r *http.Request) error {
	fs, err := s.webhooks.Failures(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fs)
	return nil
}

// retryWebhook queues a webhook's dead letters for delivery again; the leader's notifier
// delivers them when it meets the retry's event.
func (s *Server) retryWebhook(w http.ResponseWriter, r *http.Request) error {
	var req api.WebhookRetry
	if err := decode(w, r, &req); err != nil {
		return err
	}
	res, ev, err := s.webhooks.Retry(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusOK, res)
	return nil
}
