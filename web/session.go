package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// A browser signs in with an operator token once; it then holds a session cookie: a random
// session id, the token's id and an expiry, signed with a key derived from the cluster's sealed
// secret, so every replica honours it across restarts. The token itself never leaves the sign-in
// request. Each request asks the token service for the token's role again, so a revoked or
// expired token ends its sessions at once, and a role changed takes effect at once. Sign-out
// clears the cookie and remembers the session id until it would have expired.

const (
	cookieName = "ferry_session"
	// maxSignIn bounds a sign-in form's body.
	maxSignIn = 4 << 10
	// maxToken bounds a token typed in.
	maxToken = 256
)

// Tokens checks operator tokens: the server's, so the browser and the API agree on who is who.
type Tokens interface {
	// Authenticate checks a token's secret and returns the token's id and role.
	Authenticate(ctx context.Context, secret string) (id, role string, err error)
	// Role returns the role of the operator token id while it is valid: an error once it is
	// revoked or expired.
	Role(ctx context.Context, id string) (string, error)
}

// session is a signed-in browser.
type session struct {
	ID      string // random, names the session
	TokenID string
	Role    string // the token's role now
	Expires time.Time
	CSRF    string
}

// sessions signs and checks session cookies and remembers sign-outs.
type sessions struct {
	key []byte
	ttl time.Duration

	mu  sync.Mutex
	out map[string]time.Time // session ids signed out, until they expire
}

// maxSignedOut bounds the sign-outs remembered; past it, the expired ones are forgotten first.
const maxSignedOut = 100000

func (s *sessions) mac(purpose, payload string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose + "\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue makes the cookie value of a new session for token id, from now.
func (s *sessions) issue(tokenID string, now time.Time) (value string, exp time.Time) {
	b := make([]byte, 16)
	rand.Read(b)
	exp = now.Add(s.ttl).Truncate(time.Second)
	payload := base64.RawURLEncoding.EncodeToString(b) + "." + tokenID + "." + strconv.FormatInt(exp.Unix(), 10)
	return payload + "." + s.mac("session", payload), exp
}

var errNoSession = errors.New("not signed in")

// parse checks a cookie value's signature and expiry and that it was not signed out.
func (s *sessions) parse(value string, now time.Time) (session, error) {
	if len(value) > 512 {
		return session{}, errNoSession
	}
	i := strings.LastIndexByte(value, '.')
	if i < 0 || !hmac.Equal([]byte(value[i+1:]), []byte(s.mac("session", value[:i]))) {
		return session{}, errNoSession
	}
	parts := strings.Split(value[:i], ".")
	if len(parts) != 3 {
		return session{}, errNoSession
	}
	unix, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return session{}, errNoSession
	}
	exp := time.Unix(unix, 0)
	// However far ahead a cookie says it expires, it lives at most the session lifetime.
	if !now.Before(exp) || exp.After(now.Add(s.ttl+time.Minute)) {
		return session{}, errNoSession
	}
	s.mu.Lock()
	_, gone := s.out[parts[0]]
	s.mu.Unlock()
	if gone {
		return session{}, errNoSession
	}
	return session{ID: parts[0], TokenID: parts[1], Expires: exp, CSRF: s.mac("csrf", parts[0])}, nil
}

// signOut remembers that session id ended.
func (s *sessions) signOut(id string, exp, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.out) >= maxSignedOut {
		for k, e := range s.out {
			if !now.Before(e) {
				delete(s.out, k)
			}
		}
	}
	if len(s.out) < maxSignedOut {
		s.out[id] = exp
	}
}

// cookie is the session cookie with value, for the session's lifetime (a zero lifetime deletes
// it). Its age is relative, so a browser whose clock differs from the server's keeps it as long.
func (h *Handler) cookie(value string, ttl time.Duration) *http.Cookie {
	c := &http.Cookie{Name: cookieName, Value: value, Path: "/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(ttl / time.Second)}
	if ttl <= 0 {
		c.MaxAge = -1
	}
	return c
}

// signIn is a sign-in form: the token, and the page to go to after.
type signIn struct {
	Token string
	Next  string
}

// parseSignIn reads a sign-in form's body: at most maxSignIn bytes of URL-encoded fields, a token
// that looks like an operator token, and a local page to go back to.
func parseSignIn(body io.Reader) (signIn, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxSignIn+1))
	if err != nil {
		return signIn{}, fmt.Errorf("read the form: %v", err)
	}
	if len(b) > maxSignIn {
		return signIn{}, fmt.Errorf("the form is larger than %d bytes", maxSignIn)
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return signIn{}, errors.New("the form is not URL-encoded")
	}
	tok := strings.TrimSpace(v.Get("token"))
	switch {
	case tok == "":
		return signIn{}, errors.New("give an operator token (ferry_o_…)")
	case len(tok) > maxToken:
		return signIn{}, fmt.Errorf("the token is longer than %d bytes; paste an operator token (ferry_o_…)", maxToken)
	case !strings.HasPrefix(tok, "ferry_o_"):
		return signIn{}, errors.New("that is not an operator token: it starts with ferry_o_")
	}
	for _, c := range tok {
		if c <= ' ' || c > '~' {
			return signIn{}, errors.New("the token holds a character no token has")
		}
	}
	return signIn{Token: tok, Next: localPath(v.Get("next"))}, nil
}

// localPath returns p when it is a path on this site, "/" otherwise: after sign-in the browser
// goes nowhere else.
func localPath(p string) string {
	if len(p) > 1024 || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return p
}

// limiter bounds sign-in attempts per source address.
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	burst int
	addrs map[string]*rate.Limiter
}

// maxLimited bounds the addresses remembered; past it the table starts again.
const maxLimited = 10000

func (l *limiter) allow(r *http.Request, now time.Time) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.addrs[host]
	if !ok {
		if len(l.addrs) >= maxLimited {
			l.addrs = map[string]*rate.Limiter{}
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.addrs[host] = lim
	}
	return lim.AllowN(now, 1)
}
