package web_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/server"
)

// site is a real server on loopback, over plain HTTP (a browser in a test trusts no CA of ours).
type site struct {
	t     *testing.T
	ctx   context.Context
	addr  string
	srv   *server.Server
	admin *client.Client
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startSite(t *testing.T, cfg server.Config) *site {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.Listen, cfg.InsecureHTTP = t.TempDir(), l.Addr().String(), true
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	s := &site{t: t, ctx: ctx, addr: "http://" + l.Addr().String(), srv: srv}
	if s.admin, err = client.New(s.addr, srv.AdminToken); err != nil {
		t.Fatal(err)
	}
	return s
}

// token makes an operator token of role.
func (s *site) token(role string) api.Token {
	s.t.Helper()
	tok, err := s.admin.CreateToken(s.ctx, api.TokenCreate{Role: role})
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// browser is a cookie-keeping HTTP client that does not follow redirects, so tests see them.
type browser struct {
	t    *testing.T
	s    *site
	http *http.Client
}

func (s *site) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: s.t, s: s, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// do makes a request as a browser on this site would: same-origin, with form values for a POST.
func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.s.addr+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", b.s.addr)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// signIn signs in with tok and fails the test unless that works.
func (b *browser) signIn(tok string) {
	b.t.Helper()
	resp, body := b.do("POST", "/signin", url.Values{"token": {tok}, "next": {"/"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		b.t.Fatalf("sign-in: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token a page's forms carry.
func (b *browser) csrf() string {
	b.t.Helper()
	resp, body := b.do("GET", "/", nil, nil)
	m := csrfField.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		b.t.Fatalf("overview: %d, no CSRF token\n%s", resp.StatusCode, body)
	}
	return m[1]
}
