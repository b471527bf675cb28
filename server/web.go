package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/http"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/web"
)

// newWeb makes the browser interface over the server's store and services. Its session key is
// derived from the cluster's sealed session secret, so every replica honours its cookies.
func (s *Server) newWeb() (*web.Handler, error) {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("web session key"))
	return web.New(web.Config{Store: s.store, Inventory: s.inventory, Catalog: s.catalog, Rollouts: s.rollouts, Overview: s.overview,
		Tokens: webTokens{s}, Health: webHealth{s.health, s.clk}, Probes: webProbes{s.probes}, Alerts: webAlerts{s}, Logs: s.webLogs, Key: m.Sum(nil), Secure: s.tls != nil, Clock: s.clk, Logger: s.log.With("part", "web")})
}

// webTokens checks the browser's tokens as the API checks bearer tokens.
type webTokens struct{ s *Server }

var _ web.Tokens = webTokens{}

func (t webTokens) Authenticate(ctx context.Context, secret string) (string, string, error) {
	role, err := t.s.operatorRole(ctx, secret)
	if err != nil {
		return "", "", err
	}
	id, _ := splitToken(secret, prefixOperator)
	return id, role, nil
}

func (t webTokens) Role(ctx context.Context, id string) (string, error) {
	rec, err := t.s.store.Token(ctx, id)
	if err != nil {
		return "", err
	}
	if rec.Kind != store.KindOperator || rec.ExpiresAt != nil && !t.s.clk.Now().Before(*rec.ExpiresAt) {
		return "", errors.New("token expired")
	}
	return rec.Role, nil
}

// webAlerts lists and acknowledges the health service's alerts for the alerts page.
type webAlerts struct{ s *Server }

var _ web.Alerts = webAlerts{}

func (a webAlerts) Alerts(ctx context.Context, all bool) ([]api.Alert, error) {
	return a.s.health.Alerts(ctx, all)
}

// Ack acknowledges as the API does, settling the event for the notifiers.
func (a webAlerts) Ack(ctx context.Context, id int64, comment string) error {
	_, ev, err := a.s.health.Ack(ctx, id, comment)
	if err != nil {
		return err
	}
	a.s.settle(ctx, ev)
	return nil
}

// notFoundAPI answers an API path no route serves, in JSON; every other path is the browser's.
func notFoundAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, api.Error{Error: "no route for " + r.Method + " " + r.URL.Path})
}
