// Package client is the Go client of Ferry's HTTP API. The CLI, the agent and the tests all
// talk to the server through it, and through nothing else.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/pki"
)

// Client calls one Ferry server.
type Client struct {
	bases []string     // the server's addresses: one, or one per replica
	cur   atomic.Int32 // the address in use
	token string
	// HTTP is the underlying client; its timeout, if any, must exceed a held agent sync.
	HTTP *http.Client
	// Protocol is the agent protocol version sent on agent requests (api.Protocol by default).
	Protocol int
	// Clock paces reconnects of FollowEvents.
	Clock clock.Clock
}

// New returns a client for the server at addr ("https://127.0.0.1:7700") with an operator
// token. addr may list several addresses, comma-separated, one per server replica: the client
// uses the first until Failover moves it on.
func New(addr, token string) (*Client, error) {
	var bases []string
	for _, a := range strings.Split(addr, ",") {
		a = strings.TrimSpace(a)
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invalid server address %q: want https://HOST:PORT (several separated by commas)", a)
		}
		bases = append(bases, strings.TrimRight(a, "/"))
	}
	if len(bases) > maxAddrs {
		return nil, fmt.Errorf("%d server addresses; at most %d", len(bases), maxAddrs)
	}
	return &Client{
		bases:    bases,
		token:    token,
		HTTP:     &http.Client{},
		Protocol: api.Protocol,
		Clock:    clock.Real{},
	}, nil
}

// UseTLS sets how the client trusts an https server and proves itself: a CA file, a CA pin, a
// client certificate. Without it the system's roots are trusted.
func (c *Client) UseTLS(o pki.ClientOptions) error {
	// With several addresses each connection is checked against the name it dialled.
	if o.ServerName == "" && len(c.bases) == 1 {
		if u, err := url.Parse(c.base()); err == nil {
			o.ServerName = u.Hostname()
		}
	}
	cfg, err := pki.ClientConfig(o)
	if err != nil {
		return err
	}
	c.HTTP = &http.Client{Transport: Transport(cfg)}
	return nil
}

// Transport is an HTTP/1.1 transport with the given TLS configuration: agent streams upgrade
// their connection, which HTTP/2 cannot.
func Transport(cfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return tr
}

// WaitForServer polls until a server that has just been started at addr answers with the token
// it wrote to tokenFile, and returns a client for it; it gives up when ctx ends. An https server
// is trusted as tlsOpts say; a CA file there may appear only while the server starts, so a
// failure to load it is retried like an unanswered request.
func WaitForServer(ctx context.Context, addr, tokenFile string, tlsOpts pki.ClientOptions) (*Client, error) {
	var last error
	for {
		if b, err := os.ReadFile(tokenFile); err == nil {
			c, err := New(addr, strings.TrimSpace(string(b)))
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(addr, "https://") {
				err = c.UseTLS(tlsOpts)
			}
			if err == nil {
				if _, err = c.Sites(ctx); err == nil {
					return c, nil
				}
			}
			last = err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil {
				return nil, fmt.Errorf("server at %s did not come up: %w (last try: %v)", addr, ctx.Err(), last)
			}
			return nil, fmt.Errorf("server at %s did not come up: %w", addr, ctx.Err())
		case <-t.C:
		}
	}
}

// maxAddrs bounds the server addresses one client takes.
const maxAddrs = 16

// base is the address in use.
func (c *Client) base() string { return c.bases[c.cur.Load()] }

// Addr is the server address in use.
func (c *Client) Addr() string { return c.base() }

// Addrs is every server address, comma-separated, as New takes them.
func (c *Client) Addrs() string { return strings.Join(c.bases, ",") }

// Failover moves the client to the next of its server addresses, after the last back to the
// first; it reports whether there was another to move to.
func (c *Client) Failover() bool {
	if len(c.bases) < 2 {
		return false
	}
	for {
		cur := c.cur.Load()
		if c.cur.CompareAndSwap(cur, (cur+1)%int32(len(c.bases))) {
			return true
		}
	}
}

// Error is a non-2xx answer from the server.
type Error struct {
	Status  int
	Message string
	// RetryAfter is how long the server asked the client to wait (a 429's Retry-After).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// StatusOf returns the HTTP status of an *Error, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func (c *Client) request(ctx context.Context, method, path, token string, in any) (*http.Request, error) {
	return c.requestAt(ctx, c.base(), method, path, token, in)
}

// requestAt is request of the server at base.
func (c *Client) requestAt(ctx context.Context, base, method, path, token string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if strings.HasPrefix(path, "/v1/agent/") {
		req.Header.Set(api.ProtocolHeader, strconv.Itoa(c.Protocol))
	}
	return req, nil
}

// do makes a request of the server in use and, when that one cannot take it, of each of the
// others in turn: a request whose connection could not even be opened goes to the next address
// whatever its method; a GET also moves on when the connection broke or the server answered
// 502, 503 or 504. Nothing that may have been done once is sent twice.
func (c *Client) do(ctx context.Context, method, path, token string, in, out any) error {
	for tried := 1; ; tried++ {
		err := c.doOnce(ctx, method, path, token, in, out)
		if err == nil || tried >= len(c.bases) || ctx.Err() != nil || !elsewhere(method, err) {
			return err
		}
		c.Failover()
	}
}

// elsewhere reports whether a request that failed with err may go to another server.
func elsewhere(method string, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if method != http.MethodGet {
		return false
	}
	switch StatusOf(err) {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case 0:
		var pe *pki.PinError
		return !errors.As(err, &pe) // a transport failure, not a server this client refuses
	}
	return false
}

func (c *Client) doOnce(ctx context.Context, method, path, token string, in, out any) error {
	req, err := c.request(ctx, method, path, token, in)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("bad answer from %s %s: %w", method, path, err)
	}
	return nil
}

// unwrapURL drops net/http's "Get URL:" wrapping and says in one line what to do about the TLS
// failures an operator can mend.
// unreachable says why a request got no answer from the server in use: it could not be reached,
// or it was, and is not the server this client trusts.
func (c *Client) unreachable(err error) error {
	var pe *pki.PinError
	if errors.As(err, &pe) {
		return fmt.Errorf("refusing the Ferry server at %s: %w", c.base(), pe)
	}
	return fmt.Errorf("cannot reach the Ferry server at %s: %w", c.base(), unwrapURL(err))
}

func unwrapURL(err error) error {
	var ua x509.UnknownAuthorityError
	var pe *pki.PinError
	var he x509.HostnameError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &ua):
		return errors.New("its certificate is not signed by a CA this machine trusts; set FERRY_CACERT (or --ca-cert) to the server's CA file (DATA/tls/ca.pem on the server)")
	case errors.As(err, &he):
		return fmt.Errorf("its certificate is not valid for this address (%v); use a name it carries, or restart the server with --advertise NAME", he)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return errors.New("it speaks plain HTTP (started with --insecure-http); use an http:// address")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	out := &Error{Status: resp.StatusCode}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		out.RetryAfter = time.Duration(min(secs, 3600)) * time.Second
	}
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		out.Message = e.Error
		return out
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	out.Message = fmt.Sprintf("server answered %s: %s", resp.Status, msg)
	return out
}

// RetryAfterOf returns how long the server asked to wait before trying again, or 0.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Sites lists the sites.
func (c *Client) Sites(ctx context.Context) ([]api.Site, error) {
	var out []api.Site
	return out, c.do(ctx, "GET", "/v1/sites", c.token, nil, &out)
}

// SiteAdd is the request to add a site.
type SiteAdd = api.SiteAdd

// AddSite adds a site.
func (c *Client) AddSite(ctx context.Context, s SiteAdd) (api.Site, error) {
	var out api.Site
	return out, c.do(ctx, "POST", "/v1/sites", c.token, s, &out)
}

// Site shows one site.
func (c *Client) Site(ctx context.Context, name string) (api.Site, error) {
	var out api.Site
	return out, c.do(ctx, "GET", "/v1/sites/"+url.PathEscape(name), c.token, nil, &out)
}

// LabelSite changes a site's labels (change.Selector must be empty) and returns the site as
// changed.
func (c *Client) LabelSite(ctx context.Context, name string, change api.LabelChange) (api.Site, error) {
	var out api.Site
	return out, c.do(ctx, "POST", "/v1/sites/"+url.PathEscape(name)+"/labels", c.token, change, &out)
}

// RemoveSite removes a site; force also revokes its nodes.
func (c *Client) RemoveSite(ctx context.Context, name string, force bool) error {
	return c.do(ctx, "DELETE", "/v1/sites/"+url.PathEscape(name)+"?force="+strconv.FormatBool(force), c.token, nil, nil)
}

// CreateToken makes an enrollment or operator token.
func (c *Client) CreateToken(ctx context.Context, req api.TokenCreate) (api.Token, error) {
	var out api.Token
	return out, c.do(ctx, "POST", "/v1/tokens", c.token, req, &out)
}

// Tokens lists tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out []api.Token
	return out, c.do(ctx, "GET", "/v1/tokens", c.token, nil, &out)
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(id), c.token, nil, nil)
}

// Keys lists the trusted release-signing keys.
func (c *Client) Keys(ctx context.Context) ([]api.SigningKey, error) {
	var out []api.SigningKey
	return out, c.do(ctx, "GET", "/v1/keys", c.token, nil, &out)
}

// TrustKey makes the server trust a minisign public key.
func (c *Client) TrustKey(ctx context.Context, req api.KeyTrust) (api.SigningKey, error) {
	var out api.SigningKey
	return out, c.do(ctx, "POST", "/v1/keys", c.token, req, &out)
}

// RevokeKey stops trusting a key.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/keys/"+url.PathEscape(id), c.token, nil, nil)
}

// PushRelease streams a bundle of size bytes to the server, with its .minisig content when sig
// is not nil.
func (c *Client) PushRelease(ctx context.Context, bundle io.Reader, size int64, sig []byte) (api.Release, error) {
	rel, _, err := c.Push(ctx, bundle, size, sig)
	return rel, err
}

// Push is PushRelease that also says whether the push made the release (false: the same bytes
// were there under that version already, and nothing changed).
func (c *Client) Push(ctx context.Context, bundle io.Reader, size int64, sig []byte) (api.Release, bool, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base()+"/v1/releases", bundle)
	if err != nil {
		return api.Release{}, false, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/gzip")
	req.Header.Set("Authorization", "Bearer "+c.token)
	if sig != nil {
		req.Header.Set("Ferry-Signature", base64.StdEncoding.EncodeToString(sig))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return api.Release{}, false, c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return api.Release{}, false, readError(resp)
	}
	var out api.Release
	return out, resp.StatusCode == http.StatusCreated, json.NewDecoder(resp.Body).Decode(&out)
}

// Releases lists releases, of one app when app is not empty.
func (c *Client) Releases(ctx context.Context, app string) ([]api.Release, error) {
	var out []api.Release
	return out, c.do(ctx, "GET", "/v1/releases?app="+url.QueryEscape(app), c.token, nil, &out)
}

// Release shows APP@VERSION.
func (c *Client) Release(ctx context.Context, app, version string) (api.Release, error) {
	var out api.Release
	return out, c.do(ctx, "GET", "/v1/releases/"+url.PathEscape(app)+"/"+url.PathEscape(version), c.token, nil, &out)
}

func releasePath(app, version, verb string) string {
	return "/v1/releases/" + url.PathEscape(app) + "/" + url.PathEscape(version) + "/" + verb
}

// Promote moves APP@VERSION into a channel.
func (c *Client) Promote(ctx context.Context, app, version string, req api.Promote) (api.Release, error) {
	var out api.Release
	return out, c.do(ctx, "POST", releasePath(app, version, "promote"), c.token, req, &out)
}

// Withdraw removes APP@VERSION from every channel.
func (c *Client) Withdraw(ctx context.Context, app, version, reason string) (api.Release, error) {
	var out api.Release
	return out, c.do(ctx, "POST", releasePath(app, version, "withdraw"), c.token, api.Withdraw{Reason: reason}, &out)
}

// Republish makes APP@VERSION's content a new release EPOCH:VERSION.
func (c *Client) Republish(ctx context.Context, app, version string, epoch uint32) (api.Release, error) {
	var out api.Release
	return out, c.do(ctx, "POST", releasePath(app, version, "republish"), c.token, api.Republish{Epoch: epoch}, &out)
}

// Channels lists the channels in promotion order with their candidates.
func (c *Client) Channels(ctx context.Context) ([]api.Channel, error) {
	var out []api.Channel
	return out, c.do(ctx, "GET", "/v1/channels", c.token, nil, &out)
}

// Channel shows one channel with its history.
func (c *Client) Channel(ctx context.Context, name string) (api.Channel, error) {
	var out api.Channel
	return out, c.do(ctx, "GET", "/v1/channels/"+url.PathEscape(name), c.token, nil, &out)
}

// CreateChannel adds a channel after another.
func (c *Client) CreateChannel(ctx context.Context, req api.ChannelCreate) (api.Channel, error) {
	var out api.Channel
	return out, c.do(ctx, "POST", "/v1/channels", c.token, req, &out)
}

// SetChannel changes a channel's settings.
func (c *Client) SetChannel(ctx context.Context, name string, req api.ChannelSet) (api.Channel, error) {
	var out api.Channel
	return out, c.do(ctx, "PATCH", "/v1/channels/"+url.PathEscape(name), c.token, req, &out)
}

// Bulletin reads the release bulletin, of one app when app is set; runs ("APP@VER") asks which
// sites run that release.
func (c *Client) Bulletin(ctx context.Context, app, runs string) (api.Bulletin, error) {
	var out api.Bulletin
	return out, c.do(ctx, "GET", "/v1/bulletin?app="+url.QueryEscape(app)+"&runs="+url.QueryEscape(runs), c.token, nil, &out)
}

// Policies lists the rollout policies with a one-line summary of each.
func (c *Client) Policies(ctx context.Context) ([]api.Policy, error) {
	var out []api.Policy
	return out, c.do(ctx, "GET", "/v1/policies", c.token, nil, &out)
}

// Policy shows one rollout policy: its YAML and the policy it parses to.
func (c *Client) Policy(ctx context.Context, name string) (api.Policy, error) {
	var out api.Policy
	return out, c.do(ctx, "GET", "/v1/policies/"+url.PathEscape(name), c.token, nil, &out)
}

// NodeQuery filters a node list.
type NodeQuery struct {
	Site, Selector, Status string
}

// Nodes lists nodes.
func (c *Client) Nodes(ctx context.Context, q NodeQuery) ([]api.Node, error) {
	v := url.Values{}
	for k, s := range map[string]string{"site": q.Site, "selector": q.Selector, "status": q.Status} {
		if s != "" {
			v.Set(k, s)
		}
	}
	var out []api.Node
	return out, c.do(ctx, "GET", "/v1/nodes?"+v.Encode(), c.token, nil, &out)
}

// Node shows one node.
func (c *Client) Node(ctx context.Context, name string) (api.Node, error) {
	var out api.Node
	return out, c.do(ctx, "GET", "/v1/nodes/"+url.PathEscape(name), c.token, nil, &out)
}

// RemoveNode revokes a node.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/nodes/"+url.PathEscape(name), c.token, nil, nil)
}

// Label changes one node's labels (change.Selector empty) or every node change.Selector matches.
func (c *Client) Label(ctx context.Context, node string, change api.LabelChange) (api.LabelResult, error) {
	var out api.LabelResult
	path := "/v1/labels"
	if node != "" {
		path = "/v1/nodes/" + url.PathEscape(node) + "/labels"
	}
	return out, c.do(ctx, "POST", path, c.token, change, &out)
}

// Events returns up to limit events after since.
func (c *Client) Events(ctx context.Context, since int64, limit int) ([]api.Event, error) {
	var out []api.Event
	return out, c.do(ctx, "GET", fmt.Sprintf("/v1/events?since=%d&limit=%d", since, limit), c.token, nil, &out)
}

// FollowEvents streams events after since to fn until ctx ends or fn fails. When the stream
// breaks (a server restart, say) it reconnects with backoff from the last event it delivered,
// so fn sees every event once, in order. Authentication failures end it.
func (c *Client) FollowEvents(ctx context.Context, since int64, fn func(api.Event) error) error {
	backoff := 100 * time.Millisecond
	hops := 0 // servers moved to since the last wait
	for {
		got, err := c.followOnce(ctx, &since, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fnErr *callbackError
		if errors.As(err, &fnErr) {
			return fnErr.err
		}
		if s := StatusOf(err); s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusBadRequest {
			return err
		}
		if got {
			backoff = 100 * time.Millisecond
		}
		// The stream is a GET: with several servers the next one carries it on from since, each
		// tried once before waiting.
		if got {
			hops = 0
		}
		if err != nil && elsewhere(http.MethodGet, err) && hops+1 < len(c.bases) && c.Failover() {
			hops++
			continue
		}
		hops = 0
		t := c.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// followOnce reads one SSE connection; it reports whether the connection was established.
func (c *Client) followOnce(ctx context.Context, since *int64, fn func(api.Event) error) (bool, error) {
	req, err := c.request(ctx, "GET", fmt.Sprintf("/v1/events?follow=true&since=%d", *since), c.token, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, readError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if len(data) == 0 {
				continue
			}
			var e api.Event
			if err := json.Unmarshal(data, &e); err != nil {
				return true, fmt.Errorf("bad event from server: %w", err)
			}
			data = data[:0]
			if e.ID <= *since {
				continue // never deliver an event twice
			}
			if err := fn(e); err != nil {
				return true, &callbackError{err}
			}
			*since = e.ID
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimSpace(line[5:])...)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return true, io.ErrUnexpectedEOF
}

// WaitEvent follows the log after since until match accepts an event, and returns it.
func (c *Client) WaitEvent(ctx context.Context, since int64, match func(api.Event) bool) (api.Event, error) {
	var found api.Event
	errFound := errors.New("found")
	err := c.FollowEvents(ctx, since, func(e api.Event) error {
		if match(e) {
			found = e
			return errFound
		}
		return nil
	})
	if err == errFound {
		return found, nil
	}
	return found, err
}

// Agent protocol calls. They carry the protocol version header; Sync also the session token.

// Enroll trades an enrollment token for a node identity.
func (c *Client) Enroll(ctx context.Context, req api.Enroll) (api.Enrolled, error) {
	var out api.Enrolled
	return out, c.do(ctx, "POST", "/v1/agent/enroll", "", req, &out)
}

// Challenge asks for a nonce to sign.
func (c *Client) Challenge(ctx context.Context, node string) (api.Challenge, error) {
	var out api.Challenge
	return out, c.do(ctx, "POST", "/v1/agent/challenge", "", api.ChallengeRequest{Node: node}, &out)
}

// Session trades a signed challenge for a session token.
func (c *Client) Session(ctx context.Context, req api.SessionRequest) (api.Session, error) {
	var out api.Session
	return out, c.do(ctx, "POST", "/v1/agent/session", "", req, &out)
}

// AgentKeys lists the release-signing keys, revoked ones included, for an agent's check.
func (c *Client) AgentKeys(ctx context.Context, session string) ([]api.SigningKey, error) {
	var out []api.SigningKey
	return out, c.do(ctx, "GET", "/v1/agent/keys", session, nil, &out)
}

// Blob opens the blob sha256:sum from offset on (a Range request when offset > 0) and returns
// its body and the offset it really starts at: 0 when the server sent the whole blob.
func (c *Client) Blob(ctx context.Context, token, sum string, offset int64) (io.ReadCloser, int64, error) {
	req, err := c.request(ctx, "GET", "/v1/blobs/sha256:"+sum, token, nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, c.unreachable(err)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		return resp.Body, offset, nil
	case resp.StatusCode == http.StatusOK:
		return resp.Body, 0, nil
	}
	defer resp.Body.Close()
	return nil, 0, readError(resp)
}

// Deploy assigns a release to the nodes a selector matches.
func (c *Client) Deploy(ctx context.Context, req api.Deploy) (api.Deployed, error) {
	var out api.Deployed
	return out, c.do(ctx, "POST", "/v1/deploy", c.token, req, &out)
}

// Undeploy takes an app off the nodes a selector matches.
func (c *Client) Undeploy(ctx context.Context, req api.Undeploy) (api.Undeployed, error) {
	var out api.Undeployed
	return out, c.do(ctx, "POST", "/v1/undeploy", c.token, req, &out)
}

// ControlApp stops, starts or restarts an app on the named nodes.
func (c *Client) ControlApp(ctx context.Context, req api.AppControl) (api.AppControlled, error) {
	var out api.AppControlled
	return out, c.do(ctx, "POST", "/v1/apps/control", c.token, req, &out)
}

// Stream is an agent's protocol-2 stream: it sends api.Sync frames and receives api.SyncReply
// frames, each a line of JSON.
type Stream struct {
	rwc io.ReadWriteCloser
	br  *bufio.Reader
	wmu sync.Mutex
}

// OpenStream upgrades a connection to an agent stream with the session token.
func (c *Client) OpenStream(ctx context.Context, session string) (*Stream, error) {
	req, err := c.request(ctx, "GET", "/v1/agent/stream", session, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.StreamUpgrade)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, errors.New("the server upgraded the stream, but the connection is not writable")
	}
	return &Stream{rwc: rwc, br: bufio.NewReaderSize(rwc, 4096)}, nil
}

// Send writes one frame.
func (s *Stream) Send(req api.Sync) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = s.rwc.Write(append(b, '\n'))
	return err
}

// Recv reads the next frame. A frame that is an API error (the server refusing the stream)
// comes back as an *Error.
func (s *Stream) Recv() (api.SyncReply, error) {
	var out api.SyncReply
	line, err := s.br.ReadBytes('\n')
	if err != nil {
		return out, err
	}
	var e api.Error
	if json.Unmarshal(line, &e) == nil && e.Error != "" {
		code := e.Code
		if code == 0 {
			code = http.StatusBadRequest
		}
		return out, &Error{Status: code, Message: e.Error, RetryAfter: time.Duration(min(max(e.RetryAfter, 0), 3600)) * time.Second}
	}
	if err := json.Unmarshal(line, &out); err != nil {
		return out, fmt.Errorf("bad frame from the server: %w", err)
	}
	return out, nil
}

// Close ends the stream; a Recv blocked on it returns.
func (s *Stream) Close() error { return s.rwc.Close() }
