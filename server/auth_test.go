package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// publicRoutes may be called without a credential; every other route must refuse one that is
// missing or wrong. A new public route has to be added here on purpose.
var publicRoutes = map[string]bool{
	"GET /healthz":             true,
	"GET /readyz":              true,
	"GET /metrics":             true,
	"POST /v1/agent/challenge": true, // hands out a nonce; grants nothing
	"POST /v1/agent/enroll":    true, // the enrollment token in the body is the credential
	"POST /v1/agent/session":   true, // the signed challenge in the body is the credential
}

func TestEveryRouteIsAuthenticated(t *testing.T) {
	h := start(t, Config{})
	viewerTok, err := h.admin.CreateToken(context.Background(), api.TokenCreate{Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.srv.routes) < 15 {
		t.Fatalf("only %d routes registered", len(h.srv.routes))
	}
	for _, rt := range h.srv.routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.NewReplacer("{name}", "x", "{id}", "x").Replace(path)
		if publicRoutes[rt.pattern] != (rt.access == public || rt.access == agentEnroll) {
			t.Errorf("%s: access %s disagrees with the public list", rt.pattern, rt.access)
		}
		if publicRoutes[rt.pattern] {
			continue
		}
		for _, tok := range []string{"", "ferry_o_nope_nope", "garbage", h.srv.AdminToken + "x", "ferry_s_eA.9999999999.forged"} {
			code := call(t, method, h.addr+path, tok)
			if code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: status %d, want 401", rt.pattern, tok, code)
			}
		}
		if rt.access == admin {
			if code := call(t, method, h.addr+path, viewerTok.Secret); code != http.StatusForbidden {
				t.Errorf("%s with a viewer token: status %d, want 403", rt.pattern, code)
			}
		}
	}
}

func call(t *testing.T, method, url, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.ProtocolHeader, "1")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
