package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// status serves the fleet at a glance: GET /v1/status, what ferry status shows.
func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	st, err := s.overview.Status(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// serveMetrics serves the Prometheus exposition of this replica's metrics and the fleet's
// gauges.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metrics.handler.ServeHTTP(w, r)
	return nil
}

// authorizeScrape lets anyone scrape /metrics, unless the server has a metrics token: then
// only a request that bears it. The hashes are compared, in constant time, so neither the
// token nor its length shows in the time a refusal takes.
func (s *Server) authorizeScrape(r *http.Request) error {
	if s.cfg.MetricsToken == "" {
		return nil
	}
	want, got := sha256.Sum256([]byte(s.cfg.MetricsToken)), sha256.Sum256([]byte(bearer(r)))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return errorf(http.StatusUnauthorized, "/metrics needs this server's metrics token: Authorization: Bearer TOKEN, the token of --metrics-token")
	}
	return nil
}
