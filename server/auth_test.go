package server

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// routeAccess is the reviewed list of every route and who may call it. It is written out here,
// not read from the server's route table, so that registering a route with looser access than
// reviewed fails this test; a new route must be added on purpose.
var routeAccess = map[string]access{
	"GET /healthz":             public,
	"GET /readyz":              public,
	"GET /metrics":             scraper,     // public unless the server has a --metrics-token
	"POST /v1/agent/challenge": agentEnroll, // hands out a nonce; grants nothing
	"POST /v1/agent/enroll":    agentEnroll, // the enrollment token in the body is the credential
	"POST /v1/agent/session":   agentEnroll, // the signed challenge in the body is the credential
	"GET /v1/agent/keys":       agentSession,
	"GET /v1/agent/stream":     agentSession,
	"POST /v1/agent/logs/{id}": agentSession, // the id must be a request for the session's node
	// The link must be the session's node's: its To listens, its From reports the result.
	"POST /v1/agent/probes/{id}/links/{link}/listening": agentSession,
	"POST /v1/agent/probes/{id}/links/{link}/result":    agentSession,
	"GET /v1/blobs/{digest}":                            reader,

	"GET /v1/sites":                    viewer,
	"GET /v1/sites/{name}":             viewer,
	"GET /v1/nodes":                    viewer,
	"GET /v1/nodes/{name}":             viewer,
	"GET /v1/keys":                     viewer,
	"GET /v1/releases":                 viewer,
	"GET /v1/releases/{app}/{version}": viewer,
	"GET /v1/channels":                 viewer,
	"GET /v1/channels/{name}":          viewer,
	"GET /v1/bulletin":                 viewer,
	"GET /v1/policies":                 viewer,
	"GET /v1/policies/{name}":          viewer,
	"GET /v1/events":                   viewer,
	"GET /v1/status":                   viewer,
	"GET /v1/probes":                   viewer,
	"GET /v1/probes/{id}":              viewer,
	"GET /v1/rollouts":                 viewer,
	"GET /v1/rollouts/{id}":            viewer,
	"POST /v1/rollouts/plan":           viewer, // says what a rollout would do; changes nothing
	"POST /v1/rollouts/rehearse":       viewer, // simulates a rollout; changes nothing

	// Admin only: every change, and the token list.
	"POST /v1/sites":                              admin,
	"DELETE /v1/sites/{name}":                     admin,
	"POST /v1/sites/{name}/labels":                admin,
	"GET /v1/tokens":                              admin,
	"POST /v1/tokens":                             admin,
	"DELETE /v1/tokens/{id}":                      admin,
	"DELETE /v1/nodes/{name}":                     admin,
	"POST /v1/nodes/{name}/labels":                admin,
	"GET /v1/nodes/{name}/logs":                   admin, // logs can hold secrets
	"POST /v1/labels":                             admin,
	"POST /v1/probes":                             admin, // makes agents open listeners and send traffic
	"POST /v1/keys":                               admin,
	"DELETE /v1/keys/{id}":                        admin,
	"POST /v1/releases":                           admin,
	"POST /v1/releases/{app}/{version}/promote":   admin,
	"POST /v1/releases/{app}/{version}/withdraw":  admin,
	"POST /v1/releases/{app}/{version}/republish": admin,
	"POST /v1/channels":                           admin,
	"PATCH /v1/channels/{name}":                   admin,
	"POST /v1/deploy":                             admin,
	"POST /v1/undeploy":                           admin,
	"POST /v1/apps/control":                       admin,
	"POST /v1/rollouts":                           admin,
	"POST /v1/rollouts/{id}/{action}":             admin,
	// Webhooks, their list included: a receiver's URL often holds its own credential.
	"POST /v1/webhooks":              admin,
	"GET /v1/webhooks":               admin,
	"DELETE /v1/webhooks/{id}":       admin,
	"GET /v1/webhooks/{id}/failures": admin,
	"POST /v1/webhooks/{id}/retry":   admin,
	"GET /v1/checks":                 viewer,
	"POST /v1/checks":                admin,
	"DELETE /v1/checks/{name}":       admin,
	"GET /v1/checks/{name}/history":  viewer,
	"GET /v1/alerts":                 viewer,
	"POST /v1/alerts/{id}/ack":       admin,
}

func TestEveryRouteIsAuthenticated(t *testing.T) {
	h := start(t, Config{})
	if !strings.HasPrefix(h.addr, "https://") {
		t.Fatalf("the harness serves %s, not HTTPS", h.addr)
	}
	viewerTok, err := h.admin.CreateToken(context.Background(), api.TokenCreate{Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	h.site("ams", 1)
	_, open := rawAgent(t, h, "ams", "n1")
	session := open().Token

	registered := map[string]bool{}
	for _, rt := range h.srv.routes {
		registered[rt.pattern] = true
		want, ok := routeAccess[rt.pattern]
		if !ok {
			t.Errorf("%s is not in the reviewed route list", rt.pattern)
			continue
		}
		if rt.access != want {
			t.Errorf("%s: registered as %s, reviewed as %s", rt.pattern, rt.access, want)
		}
	}
	var missing []string
	for p := range routeAccess {
		if !registered[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("reviewed routes not registered: %v", missing)
	}

	// Whatever the table says, the server must behave so: walk every route with each credential.
	for pattern, acc := range routeAccess {
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{name}", "x", "{id}", "x", "{app}", "x", "{version}", "1.0.0", "{digest}", "sha256:"+strings.Repeat("a", 64)).Replace(path)
		if acc == public || acc == agentEnroll || acc == scraper { // scraper: TestMetricsToken
			continue
		}
		for _, tok := range []string{"", "ferry_o_nope_nope", "garbage", h.srv.AdminToken + "x", "ferry_s_eA.9999999999.forged"} {
			if code := h.call(method, path, tok); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: status %d, want 401", pattern, tok, code)
			}
		}
		switch acc {
		case admin:
			if code := h.call(method, path, viewerTok.Secret); code != http.StatusForbidden {
				t.Errorf("%s with a viewer token: status %d, want 403", pattern, code)
			}
			if code := h.call(method, path, session); code != http.StatusUnauthorized {
				t.Errorf("%s with an agent session: status %d, want 401", pattern, code)
			}
		case viewer:
			if code := h.call(method, path, viewerTok.Secret); code == http.StatusUnauthorized || code == http.StatusForbidden {
				t.Errorf("%s with a viewer token: status %d", pattern, code)
			}
			if code := h.call(method, path, session); code != http.StatusUnauthorized {
				t.Errorf("%s with an agent session: status %d, want 401", pattern, code)
			}
		case agentSession:
			if code := h.call(method, path, h.srv.AdminToken); code != http.StatusUnauthorized {
				t.Errorf("%s with the admin token: status %d, want 401", pattern, code)
			}
		}
	}
}

// call makes one request with a small JSON body and returns its status.
func (h *harness) call(method, path, tok string) int {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.addr+path, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.ProtocolHeader, "2")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// browserRoutes is the reviewed list of the web interface's routes that need a signed-in
// session (a POST also an admin and the session's CSRF token). Only the sign-in page and form,
// sign-out and the assets are public there.
var browserRoutes = []string{
	"GET /{$}", "GET /map", "GET /sites/{name}", "GET /nodes/{name}", "GET /nodes/{name}/logs/{app}", "GET /releases", "GET /rollouts",
	"GET /rollouts/{id}", "GET /rollouts/{id}/live", "POST /rollouts/{id}/{action}", "GET /stats",
	"GET /alerts", "POST /alerts/{id}/ack",
	"GET /events", "GET /events/live",
}

func TestEveryBrowserRouteNeedsASession(t *testing.T) {
	h := start(t, Config{})
	got := h.srv.web.Routes()
	sort.Strings(got)
	want := append([]string(nil), browserRoutes...)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("browser routes:\n%s\nreviewed:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	h.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, pattern := range browserRoutes {
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{$}", "", "{name}", "x", "{app}", "hello", "{id}", "1", "{action}", "pause").Replace(path)
		req, _ := http.NewRequest(method, h.addr+path, strings.NewReader("csrf=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+h.srv.AdminToken) // the API's credential opens no page
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantCode := http.StatusSeeOther
		if method == "POST" {
			wantCode = http.StatusUnauthorized
		}
		if resp.StatusCode != wantCode || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s without a session: status %d, CSP %q; want %d and a CSP", pattern, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), wantCode)
		}
	}
	// Over TLS the session cookie is Secure.
	req, _ := http.NewRequest("POST", h.addr+"/signin", strings.NewReader("token="+h.srv.AdminToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(c) != 1 || !c[0].Secure || !c[0].HttpOnly {
		t.Errorf("sign-in over TLS: status %d, cookies %v", resp.StatusCode, c)
	}
}
