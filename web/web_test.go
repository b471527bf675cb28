package web_test

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/web"
)

// Every response the browser can get carries the CSP: pages, redirects, errors, assets, the
// mux's own path-cleaning redirects, and the API's answers too.
func TestCSPOnEveryResponse(t *testing.T) {
	s := startSite(t, server.Config{})
	anon := s.browser()
	signed := s.browser()
	signed.signIn(s.token(api.RoleViewer).Secret)
	for _, c := range []struct {
		b      *browser
		method string
		path   string
		form   url.Values
		code   int
	}{
		{anon, "GET", "/", nil, http.StatusSeeOther},
		{anon, "GET", "/signin", nil, http.StatusOK},
		{anon, "POST", "/signin", url.Values{"token": {"nope"}}, http.StatusBadRequest},
		{anon, "POST", "/signin", url.Values{"token": {"ferry_o_abc_def"}}, http.StatusUnauthorized},
		{anon, "GET", "/no/such/page", nil, http.StatusNotFound},
		{anon, "GET", "/assets/style.css", nil, http.StatusOK},
		{anon, "GET", "/assets/nope.js", nil, http.StatusNotFound},
		{anon, "GET", "/sites/../events", nil, http.StatusTemporaryRedirect},
		{anon, "GET", "/v1/nope", nil, http.StatusNotFound},
		{anon, "GET", "/healthz", nil, http.StatusOK},
		{anon, "POST", "/rollouts/1/pause", url.Values{}, http.StatusUnauthorized},
		{signed, "GET", "/", nil, http.StatusOK},
		{signed, "GET", "/sites/nowhere", nil, http.StatusNotFound},
		{signed, "GET", "/nodes/nobody", nil, http.StatusNotFound},
		{signed, "GET", "/rollouts/42", nil, http.StatusNotFound},
		{signed, "GET", "/rollouts/x", nil, http.StatusNotFound},
		{signed, "GET", "/releases", nil, http.StatusOK},
		{signed, "GET", "/rollouts", nil, http.StatusOK},
		{signed, "GET", "/stats", nil, http.StatusOK},
		{signed, "GET", "/events", nil, http.StatusOK},
		{signed, "GET", "/map", nil, http.StatusOK},
		{signed, "GET", "/whatever", nil, http.StatusNotFound},
	} {
		resp, body := c.b.do(c.method, c.path, c.form, nil)
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: status %d, want %d\n%.300s", c.method, c.path, resp.StatusCode, c.code, body)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != web.CSP {
			t.Errorf("%s %s (%d): CSP %q", c.method, c.path, resp.StatusCode, got)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " style=") {
			t.Errorf("%s %s: inline script or style in the page", c.method, c.path)
		}
	}
}

// A change needs the session's CSRF token and a same-origin request.
func TestCSRFRejection(t *testing.T) {
	s := startSite(t, server.Config{})
	b := s.browser()
	b.signIn(s.srv.AdminToken)
	token := b.csrf()
	for _, c := range []struct {
		name string
		form url.Values
		hdr  map[string]string
		code int
	}{
		{"no token", url.Values{}, nil, http.StatusForbidden},
		{"a forged token", url.Values{"csrf": {"AAAA"}}, nil, http.StatusForbidden},
		{"another site", url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		// Past every check, the rollout service says the rollout does not exist.
		{"the session's token", url.Values{"csrf": {token}}, nil, http.StatusNotFound},
	} {
		resp, body := b.do("POST", "/rollouts/7/pause", c.form, c.hdr)
		if resp.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d\n%.300s", c.name, resp.StatusCode, c.code, body)
		}
	}
	// Another browser's session has another token.
	other := s.browser()
	other.signIn(s.srv.AdminToken)
	if resp, _ := other.do("POST", "/rollouts/7/pause", url.Values{"csrf": {token}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another session's CSRF token: status %d, want 403", resp.StatusCode)
	}
}

// A viewer sees the pages but no change control, and its changes are refused.
func TestViewerCannotChange(t *testing.T) {
	s := startSite(t, server.Config{})
	b := s.browser()
	b.signIn(s.token(api.RoleViewer).Secret)
	resp, body := b.do("POST", "/rollouts/7/pause", url.Values{"csrf": {b.csrf()}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "viewer token") {
		t.Fatalf("a viewer's pause: status %d\n%.400s", resp.StatusCode, body)
	}
	_, page := b.do("GET", "/", nil, nil)
	if !strings.Contains(page, `id="role">viewer<`) {
		t.Errorf("the overview does not say the viewer's role")
	}
}

// A session lasts its lifetime and no longer; a revoked token ends its sessions at once.
func TestSessionExpiryAndRevocation(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := startSite(t, server.Config{Clock: clk})
	tok := s.token(api.RoleViewer)
	b := s.browser()
	b.signIn(tok.Secret)
	if resp, _ := b.do("GET", "/events", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: status %d", resp.StatusCode)
	}
	clk.Advance(11 * time.Hour)
	if resp, _ := b.do("GET", "/events", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after 11h: status %d", resp.StatusCode)
	}
	clk.Advance(time.Hour)
	resp, _ := b.do("GET", "/events", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?next=%2Fevents") {
		t.Fatalf("after 12h: status %d to %q, want the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}

	b.signIn(tok.Secret)
	if err := s.admin.RevokeToken(s.ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/events", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the token's revocation: status %d, want a redirect to sign in", resp.StatusCode)
	}
	resp, body := b.do("POST", "/signin", url.Values{"token": {tok.Secret}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Fatalf("sign-in with the revoked token: status %d", resp.StatusCode)
	}
}

// Sign-out clears the cookie, and the cookie replayed is refused.
func TestSignOut(t *testing.T) {
	s := startSite(t, server.Config{})
	b := s.browser()
	b.signIn(s.srv.AdminToken)
	u, _ := url.Parse(s.addr)
	cookies := b.http.Jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("cookies after sign-in: %v", cookies)
	}
	resp, _ := b.do("POST", "/signout", url.Values{"csrf": {b.csrf()}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Fatalf("sign-out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := b.http.Jar.Cookies(u); len(got) != 0 {
		t.Errorf("cookies after sign-out: %v", got)
	}
	replay := s.browser()
	replay.http.Jar.SetCookies(u, cookies)
	if resp, _ := replay.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the signed-out cookie replayed: status %d, want a redirect to sign in", resp.StatusCode)
	}
}

// The session cookie is HttpOnly and SameSite=Strict; Secure when the server speaks TLS.
func TestSessionCookie(t *testing.T) {
	s := startSite(t, server.Config{})
	resp, _ := s.browser().do("POST", "/signin", url.Values{"token": {s.srv.AdminToken}}, nil)
	c := resp.Cookies()
	if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Secure || c[0].MaxAge < 12*3600-2 || c[0].MaxAge > 12*3600 {
		t.Fatalf("cookie over plain HTTP: %+v", c)
	}
}

// Sign-in attempts from one address are rate-limited.
func TestSignInRateLimit(t *testing.T) {
	s := startSite(t, server.Config{})
	b := s.browser()
	codes := map[int]int{}
	for range 8 {
		resp, _ := b.do("POST", "/signin", url.Values{"token": {"ferry_o_guess_guess"}}, nil)
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[http.StatusUnauthorized] != 5 || codes[http.StatusTooManyRequests] != 3 {
		t.Fatalf("status counts %v, want 5×401 then 3×429", codes)
	}
}

// The events feed streams each new event as it is written, and a browser that reconnects with
// Last-Event-ID resumes right after the last event it saw.
func TestEventsLive(t *testing.T) {
	s := startSite(t, server.Config{})
	b := s.browser()
	b.signIn(s.token(api.RoleViewer).Secret)
	open := func(hdr map[string]string) (*bufio.Reader, func()) {
		t.Helper()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.addr+"/events/live", nil)
		req.Header.Set("Accept", "text/event-stream")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := b.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("live events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return bufio.NewReader(resp.Body), func() { cancel(); resp.Body.Close() }
	}
	// upTo reads lines until one holding want, and returns the id: line after it.
	upTo := func(r *bufio.Reader, want string) string {
		t.Helper()
		seen := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before %q: %v", want, err)
			}
			seen = seen || strings.Contains(line, want)
			if id, ok := strings.CutPrefix(line, "id: "); ok && seen {
				return strings.TrimSpace(id)
			}
		}
	}
	r, stop := open(nil)
	r.ReadString('\n') // the retry line: the stream is open, from the log's end
	if _, err := s.admin.AddSite(s.ctx, client.SiteAdd{Name: "lis", Tier: 2}); err != nil {
		t.Fatal(err)
	}
	id := upTo(r, `"subject":"lis"`)
	stop()
	n, _ := strconv.ParseInt(id, 10, 64)
	r, stop = open(map[string]string{"Last-Event-ID": strconv.FormatInt(n-1, 10)})
	defer stop()
	if again := upTo(r, `"type":"site.added"`); again != id {
		t.Fatalf("resumed at %s, want %s", again, id)
	}
}

// Each page's title names the page and its subject.
func TestPageTitles(t *testing.T) {
	s := startSite(t, server.Config{})
	if _, err := s.admin.AddSite(s.ctx, client.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	b := s.browser()
	b.signIn(s.srv.AdminToken)
	for path, want := range map[string]string{
		"/":             "Fleet overview — Ferry",
		"/sites/ams":    "Site ams — Ferry",
		"/alerts":       "Alerts — Ferry",
		"/alerts?all=1": "Alerts — Ferry",
		"/stats":        "Statistics — Ferry",
		"/events":       "Events — Ferry",
		"/nodes/nope":   "404 Not Found — Ferry",
	} {
		_, page := b.do("GET", path, nil, nil)
		if !strings.Contains(page, "<title>"+want+"</title>") {
			t.Errorf("%s: want the title %q\n%.300s", path, want, page)
		}
	}
}
