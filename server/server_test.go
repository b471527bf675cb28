package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/pki"
)

type harness struct {
	t     *testing.T
	srv   *Server
	addr  string
	admin *client.Client
	// http makes raw requests to the server, trusting its CA.
	http *http.Client
	stop func()
}

// client is an API client of the server with tok (none when empty), trusting its CA.
func (h *harness) client(tok string) *client.Client {
	h.t.Helper()
	c, err := client.New(h.addr, tok)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := c.UseTLS(pki.ClientOptions{CAFile: h.srv.CAFile}); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	return startOn(t, cfg, nil)
}

// startOn starts a server whose listener is wrapped by wrap, when given.
func startOn(t *testing.T, cfg Config, wrap func(net.Listener) net.Listener) *harness {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		l = wrap(l)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	h := &harness{t: t, srv: srv, addr: srv.Scheme() + "://" + l.Addr().String()}
	h.admin = h.client(srv.AdminToken)
	h.http = h.admin.HTTP
	stopped := false
	h.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) site(name string, tier int) {
	h.t.Helper()
	if _, err := h.admin.AddSite(context.Background(), client.SiteAdd{Name: name, Tier: tier}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) enrollToken(site string, uses int) string {
	h.t.Helper()
	tok, err := h.admin.CreateToken(context.Background(), api.TokenCreate{Site: site, Uses: uses})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok.Secret
}

// runAgent starts a real agent in a temp dir and returns it with a stop function.
func (h *harness) runAgent(name, token, dir string) (*agent.Agent, func()) {
	h.t.Helper()
	return h.runAgentWith(agent.Config{Token: token, DataDir: dir, Name: name})
}

// runAgentWith is runAgent with cfg (its server and logger are the harness's).
func (h *harness) runAgentWith(cfg agent.Config) (*agent.Agent, func()) {
	h.t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = h.t.TempDir()
	}
	cfg.Server, cfg.Logger = h.addr, slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	stop := func() { cancel(); <-done }
	h.t.Cleanup(stop)
	return a, stop
}

// waitEvent follows the event log until an event of typ about subject arrives (bounded).
func (h *harness) waitEvent(since int64, typ, subject string) api.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := h.admin.WaitEvent(ctx, since, func(e api.Event) bool { return e.Type == typ && e.Subject == subject })
	if err != nil {
		h.t.Fatalf("waiting for %s %s: %v", typ, subject, err)
	}
	return e
}

// waitGeneration waits until the agent holds desired state of at least gen (bounded).
func waitGeneration(t *testing.T, a *agent.Agent, gen int64) api.Desired {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		d, changed := a.Desired()
		if d.Generation >= gen {
			return d
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("agent %s still at generation %d, want %d", a.Name(), d.Generation, gen)
		}
	}
}

func lastEventID(t *testing.T, c *client.Client) int64 {
	t.Helper()
	evs, err := c.Events(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].ID
}

func TestEnrollLabelPushAndRevoke(t *testing.T) {
	h := start(t, Config{HeartbeatInterval: 2 * time.Second})
	ctx := context.Background()
	h.site("ams", 1)
	a, _ := h.runAgent("ams-01", h.enrollToken("ams", 1), "")
	h.waitEvent(0, "node.enrolled", "ams-01")
	waitGeneration(t, a, 1)

	n, err := h.admin.Node(ctx, "ams-01")
	if err != nil || n.Status != api.StatusUp || n.Site != "ams" || n.Facts.CPUs == 0 || n.Facts.Protocol != api.Protocol {
		t.Fatalf("node = %+v, %v", n, err)
	}
	res, err := h.admin.Label(ctx, "ams-01", api.LabelChange{Set: map[string]string{"zone": "b"}})
	if err != nil || len(res.Nodes) != 1 {
		t.Fatalf("label: %+v %v", res, err)
	}
	// The held sync wakes: the agent gets generation 2 long before the 2s hold ends.
	if d := waitGeneration(t, a, 2); d.Labels["zone"] != "b" {
		t.Fatalf("desired = %+v", d)
	}
	// Selector labelling and implicit labels.
	res, err = h.admin.Label(ctx, "", api.LabelChange{Selector: "site=ams,tier=1", Set: map[string]string{"rack": "r1"}})
	if err != nil || len(res.Nodes) != 1 {
		t.Fatalf("label by selector: %+v %v", res, err)
	}
	waitGeneration(t, a, 3)
	nodes, err := h.admin.Nodes(ctx, client.NodeQuery{Selector: "rack=r1,zone!=a"})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("select: %+v %v", nodes, err)
	}
	if nodes, _ := h.admin.Nodes(ctx, client.NodeQuery{Selector: "tier=2"}); len(nodes) != 0 {
		t.Fatalf("tier=2 matched %d nodes", len(nodes))
	}

	// Revocation is immediate: the node is gone from the hub and its session stops working.
	since := lastEventID(t, h.admin)
	if err := h.admin.RemoveNode(ctx, "ams-01"); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(since, "node.revoked", "ams-01")
	if _, ok := h.srv.hub.watch("ams-01"); ok {
		t.Fatal("revoked node still active")
	}
	if nodes, _ := h.admin.Nodes(ctx, client.NodeQuery{}); len(nodes) != 0 {
		t.Fatalf("default node list shows revoked nodes: %+v", nodes)
	}
	if nodes, _ := h.admin.Nodes(ctx, client.NodeQuery{Status: "revoked"}); len(nodes) != 1 {
		t.Fatalf("--status revoked: %+v", nodes)
	}
}

func TestDownAndUpOnFakeClock(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour, Clock: clk})
	h.site("gva", 2)
	dir := t.TempDir()
	a, stopAgent := h.runAgent("gva-01", h.enrollToken("gva", 1), dir)
	waitGeneration(t, a, 1)
	stopAgent()

	clk.Advance(3*time.Hour - time.Second)
	h.srv.Sweep(context.Background())
	if n, _ := h.admin.Node(context.Background(), "gva-01"); n.Status != api.StatusUp {
		t.Fatalf("down before grace: %s", n.Status)
	}
	since := lastEventID(t, h.admin)
	clk.Advance(time.Second)
	h.srv.Sweep(context.Background())
	h.waitEvent(since, "node.down", "gva-01")

	// The same agent returns with its identity (no token needed) and is up again.
	since = lastEventID(t, h.admin)
	a2, _ := h.runAgent("", "", dir)
	if a2.Name() != "gva-01" {
		t.Fatalf("restarted agent is %q", a2.Name())
	}
	h.waitEvent(since, "node.up", "gva-01")
}

func TestAgentProtocolSkew(t *testing.T) {
	h := start(t, Config{})
	for _, v := range []string{"", "0", strconv.Itoa(api.MaxProtocol + 1), "x"} {
		req, _ := http.NewRequest("POST", h.addr+"/v1/agent/challenge", strings.NewReader(`{"node":"a"}`))
		if v != "" {
			req.Header.Set(api.ProtocolHeader, v)
		}
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired || !bytes.Contains(body, []byte("supported")) {
			t.Errorf("protocol %q: %d %s", v, resp.StatusCode, body)
		}
	}
}

func signed(t *testing.T, token, name string) (api.Enroll, ed25519.PrivateKey) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pk := base64.StdEncoding.EncodeToString(pub)
	sig := ed25519.Sign(priv, api.EnrollMessage(token, name, pk))
	return api.Enroll{Token: token, Name: name, PublicKey: pk, Signature: base64.StdEncoding.EncodeToString(sig)}, priv
}

func TestEnrollmentRefusals(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk})
	ctx := context.Background()
	h.site("ams", 1)
	ac := h.client("")
	tok := h.enrollToken("ams", 1)

	before := lastEventID(t, h.admin)
	forged, _ := signed(t, tok, "n1")
	forged.Signature = base64.StdEncoding.EncodeToString(make([]byte, 64))
	cases := []struct {
		name string
		req  api.Enroll
		code int
	}{
		{"forged signature", forged, 401},
		{"not a token", func() api.Enroll { r, _ := signed(t, "ferry_e_zz_yy", "n1"); return r }(), 401},
		{"operator token", func() api.Enroll { r, _ := signed(t, h.srv.AdminToken, "n1"); return r }(), 401},
		{"bad name", func() api.Enroll { r, _ := signed(t, tok, "N_1"); return r }(), 400},
		{"implicit label", func() api.Enroll { r, _ := signed(t, tok, "n1"); r.Labels = map[string]string{"site": "x"}; return r }(), 400},
	}
	for _, c := range cases {
		_, err := ac.Enroll(ctx, c.req)
		if client.StatusOf(err) != c.code {
			t.Errorf("%s: got %v, want status %d", c.name, err, c.code)
		}
	}
	if got := lastEventID(t, h.admin); got != before {
		t.Fatalf("refused enrollments wrote events (%d → %d)", before, got)
	}

	ok, priv := signed(t, tok, "n1")
	if _, err := ac.Enroll(ctx, ok); err != nil {
		t.Fatal(err)
	}
	again, _ := signed(t, tok, "n2")
	if _, err := ac.Enroll(ctx, again); client.StatusOf(err) != 401 || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("used-up token: %v", err)
	}
	tok2 := h.enrollToken("ams", 5)
	dup, _ := signed(t, tok2, "n1")
	if _, err := ac.Enroll(ctx, dup); client.StatusOf(err) != 409 {
		t.Fatalf("duplicate name: %v", err)
	}
	clk.Advance(25 * time.Hour)
	late, _ := signed(t, tok2, "n3")
	if _, err := ac.Enroll(ctx, late); client.StatusOf(err) != 401 || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}

	// Sessions: a signed challenge works once; a replay, another node's key or a forged
	// session token does not.
	ch, err := ac.Challenge(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage("n1", ch.Nonce)))
	sess, err := ac.Session(ctx, api.SessionRequest{Node: "n1", Nonce: ch.Nonce, Signature: sig})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Session(ctx, api.SessionRequest{Node: "n1", Nonce: ch.Nonce, Signature: sig}); client.StatusOf(err) != 401 {
		t.Fatalf("replayed challenge: %v", err)
	}
	ch2, _ := ac.Challenge(ctx, "n1")
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	wrong := base64.StdEncoding.EncodeToString(ed25519.Sign(other, api.SessionMessage("n1", ch2.Nonce)))
	if _, err := ac.Session(ctx, api.SessionRequest{Node: "n1", Nonce: ch2.Nonce, Signature: wrong}); client.StatusOf(err) != 401 {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := syncOnce(ac, sess.Token+"x", api.Sync{}); client.StatusOf(err) != 401 {
		t.Fatalf("forged session: %v", err)
	}
	forgedSess := strings.Replace(sess.Token, base64.RawURLEncoding.EncodeToString([]byte("n1")), base64.RawURLEncoding.EncodeToString([]byte("n2")), 1)
	if _, err := syncOnce(ac, forgedSess, api.Sync{}); client.StatusOf(err) != 401 {
		t.Fatalf("session for another node: %v", err)
	}
	// A malformed app report is refused whole: no report, no event. (Opening the stream it
	// came on is a sign of life, so the node is brought up first, and its return written.)
	if _, err := syncOnce(ac, sess.Token, api.Sync{Generation: 1}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(0, api.EventNodeUp, "n1")
	before = lastEventID(t, h.admin)
	for name, apps := range map[string][]api.NodeApp{
		"bad app name":    {{App: "../etc", Version: "1.0.0"}},
		"duplicate app":   {{App: "hello", Version: "1.0.0"}, {App: "hello", Version: "1.1.0"}},
		"over-long error": {{App: "hello", Error: strings.Repeat("x", 2000)}},
	} {
		if _, err := syncOnce(ac, sess.Token, api.Sync{Generation: 1, Apps: &apps}); client.StatusOf(err) != 400 {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
	if n, _ := h.admin.Node(ctx, "n1"); len(n.Apps) != 0 {
		t.Fatalf("a refused report was stored: %+v", n.Apps)
	}
	if got := lastEventID(t, h.admin); got != before {
		t.Fatalf("refused reports wrote events (%d → %d)", before, got)
	}
	clk.Advance(2 * time.Hour)
	if _, err := syncOnce(ac, sess.Token, api.Sync{Generation: 1}); client.StatusOf(err) != 401 {
		t.Fatalf("expired session: %v", err)
	}
}

// syncOnce sends one frame on a fresh stream opened with session and returns the answer, or
// the error that refused it: at the stream's opening, or as an error frame.
func syncOnce(ac *client.Client, session string, req api.Sync) (api.SyncReply, error) {
	st, err := ac.OpenStream(context.Background(), session)
	if err != nil {
		return api.SyncReply{}, err
	}
	defer st.Close()
	if err := st.Send(req); err != nil {
		return api.SyncReply{}, err
	}
	return st.Recv()
}
