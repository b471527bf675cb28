package server

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/internal/bundletest"
)

// (Syncs here send generation 0, so the server answers at once with the desired state.)
// A revoked node's sessions stay dead, and so do they when its name is enrolled again with
// another key: a session belongs to one enrollment.
func TestRevokedSessionsStayDead(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	h.site("ams", 1)
	ac, open := rawAgent(t, h, "ams", "n1")
	old := open()
	if _, err := syncOnce(ac, old.Token, api.Sync{}); err != nil {
		t.Fatalf("live session refused: %v", err)
	}
	if err := h.admin.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	refused := func(when string) {
		t.Helper()
		if _, err := syncOnce(ac, old.Token, api.Sync{}); client.StatusOf(err) != 401 {
			t.Errorf("%s: the old session synced: %v", when, err)
		}
		if _, _, err := ac.Blob(ctx, old.Token, strings.Repeat("a", 64), 0); client.StatusOf(err) != 401 {
			t.Errorf("%s: the old session read a blob: %v", when, err)
		}
		if _, err := ac.OpenStream(ctx, old.Token); client.StatusOf(err) != 401 {
			t.Errorf("%s: the old session opened a stream: %v", when, err)
		}
	}
	refused("after node rm")
	// The revoked identity cannot open a new session either, and is told it was removed.
	if _, err := tryOpen(ac, "n1", nil); client.StatusOf(err) != 403 || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("a revoked node opened a session: %v", err)
	}

	// The name enrolled again, with another key: the old identity's sessions stay refused and
	// mark nothing up; the new identity's work.
	ac2, open2 := rawAgent(t, h, "ams", "n1")
	refused("after re-enrollment")
	fresh := open2()
	if _, err := syncOnce(ac2, fresh.Token, api.Sync{}); err != nil {
		t.Fatalf("the new identity's session: %v", err)
	}
}

// tryOpen asks for a challenge and signs it with key (a fresh, unenrolled one when nil).
func tryOpen(ac *client.Client, node string, key ed25519.PrivateKey) (api.Session, error) {
	if key == nil {
		_, key, _ = ed25519.GenerateKey(nil)
	}
	ch, err := ac.Challenge(context.Background(), node)
	if err != nil {
		return api.Session{}, err
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, api.SessionMessage(node, ch.Nonce)))
	return ac.Session(context.Background(), api.SessionRequest{Node: node, Nonce: ch.Nonce, Signature: sig})
}

// A session token claiming a far expiry lives no longer than a session does.
func TestSessionLifetimeIsCapped(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk})
	h.site("ams", 1)
	ac, open := rawAgent(t, h, "ams", "n1")
	sess := open()
	n, _ := h.admin.Node(context.Background(), "n1")
	// Forge what a leaked cluster key could never be needed for: a token the server itself
	// signed with a year-long expiry (as an older build or a bug might).
	payload := base64.RawURLEncoding.EncodeToString([]byte("n1")) + "." + keyFingerprint(n.PublicKey) + "." +
		strconv.FormatInt(clk.Now().Add(365*24*time.Hour).Unix(), 10)
	long := "ferry_s_" + payload + "." + h.srv.mac("session", payload)
	if _, err := syncOnce(ac, long, api.Sync{}); client.StatusOf(err) != 401 {
		t.Fatalf("a year-long session was accepted: %v", err)
	}
	if _, err := syncOnce(ac, sess.Token, api.Sync{}); err != nil {
		t.Fatalf("a normal session was refused: %v", err)
	}
}

// A challenge once spent stays spent across a server restart.
func TestChallengeNotReplayedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{DataDir: dir})
	h.site("ams", 1)
	ac := h.client("")
	req, priv := signed(t, h.enrollToken("ams", 1), "n1")
	if _, err := ac.Enroll(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	ch, err := ac.Challenge(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	sreq := api.SessionRequest{Node: "n1", Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage("n1", ch.Nonce)))}
	if _, err := ac.Session(context.Background(), sreq); err != nil {
		t.Fatal(err)
	}
	h.stop()
	h2 := start(t, Config{DataDir: dir})
	if _, err := h2.client("").Session(context.Background(), sreq); client.StatusOf(err) != 401 {
		t.Fatalf("a spent challenge was honoured after a restart: %v", err)
	}
}

// Every file the server writes is 0600 and every directory 0700, whatever the umask, in its data
// directory and a blob directory of its own; the CA's key is written nowhere (the database
// holds it, sealed). A cluster key others can read stops the server at start.
func TestServerFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	h := start(t, Config{DataDir: dir, BlobsDir: filepath.Join(root, "blobs")})
	h.site("ams", 1)
	a, _ := h.runAgent("n1", h.enrollToken("ams", 1), "")
	waitGeneration(t, a, 1)
	s := newSigner(t)
	if _, err := h.admin.TrustKey(context.Background(), api.KeyTrust{PublicKey: s.pub()}); err != nil {
		t.Fatal(err)
	}
	b := bundletest.Build(t, "hello", "1.0.0", "x")
	if _, err := push(h, b, s.sign(b)); err != nil {
		t.Fatal(err)
	}
	h.stop()
	seen := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p == root { // the testing package made it, not the server
			return nil
		}
		fi, _ := d.Info()
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		seen++
		return nil
	})
	for _, f := range []string{"data/ferry.db", "data/cluster.key", "data/admin.token", "data/tls/ca.pem", "data/tls/server.pem", "data/tls/server.key", "blobs/sha256"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tls", "ca.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the CA's key was written to the data directory: %v", err)
	}
	if seen < 10 {
		t.Fatalf("only %d paths under the data directory", seen)
	}

	os.Chmod(filepath.Join(dir, "cluster.key"), 0o644)
	_, err := New(context.Background(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a world-readable cluster key: %v", err)
	}
}

// The public agent routes answer 429 with Retry-After once an address has spent its budget,
// before reading the body; another address has its own budget, and time refills it.
func TestPublicRoutesAreRateLimited(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, PublicRate: 1, PublicBurst: 3})
	from := func(ip string) *http.Client {
		tr := h.http.Transport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext
		return &http.Client{Transport: tr}
	}
	post := func(c *http.Client, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", h.addr+"/v1/agent/challenge", strings.NewReader(body))
		req.Header.Set(api.ProtocolHeader, strconv.Itoa(api.Protocol))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	one := from("127.0.0.1")
	for i := 0; i < 3; i++ {
		if r := post(one, `{"node":"n1"}`); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
	}
	// Spent: refused before the (malformed) body is looked at.
	r := post(one, `not json`)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("over budget: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	// The Go client (and so the agent) reads how long to wait.
	if _, err := h.client("").Challenge(context.Background(), "n1"); client.StatusOf(err) != 429 || client.RetryAfterOf(err) != time.Second {
		t.Fatalf("client over budget: %v (retry after %v)", err, client.RetryAfterOf(err))
	}
	if r := post(from("127.0.0.2"), `{"node":"n1"}`); r.StatusCode != 200 {
		t.Fatalf("another address: %d", r.StatusCode)
	}
	clk.Advance(time.Second)
	if r := post(one, `{"node":"n1"}`); r.StatusCode != 200 {
		t.Fatalf("after a second: %d", r.StatusCode)
	}
	// Operator routes are not limited this way.
	for i := 0; i < 5; i++ {
		if _, err := h.admin.Sites(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A client that sends a request body too slowly is cut off at the read timeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	h := start(t, Config{ReadTimeout: 300 * time.Millisecond})
	conn, err := tls.Dial("tcp", strings.TrimPrefix(h.addr, "https://"), h.http.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /v1/agent/challenge HTTP/1.1\r\nHost: x\r\nFerry-Protocol: 2\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"node\":")
	// The server must end the connection by itself; a bounded wait guards the test only.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("slow body answered %d", resp.StatusCode)
		}
		_, err = conn.Read(make([]byte, 1))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept a slow-body connection open")
	}
}

// One token may hold only so many event streams open.
func TestEventFollowersPerTokenAreCapped(t *testing.T) {
	h := start(t, Config{MaxFollowers: 2})
	follow := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", h.addr+"/v1/events?follow=true", nil)
		req.Header.Set("Authorization", "Bearer "+h.srv.AdminToken)
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	a, b := follow(), follow()
	for _, r := range []*http.Response{a, b} {
		if r.StatusCode != 200 {
			t.Fatalf("follower: %d", r.StatusCode)
		}
		// The stream's first line says it is open.
		if line, err := bufio.NewReader(r.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, ": ferry events") {
			t.Fatalf("follower's first line %q, %v", line, err)
		}
	}
	c := follow()
	c.Body.Close()
	if c.StatusCode != http.StatusTooManyRequests || c.Header.Get("Retry-After") == "" {
		t.Fatalf("third follower: %d", c.StatusCode)
	}
	// Another token has its own allowance.
	viewer, err := h.admin.CreateToken(context.Background(), api.TokenCreate{Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, err := h.client(viewer.Secret).WaitEvent(ctx, 0, func(api.Event) bool { return true })
		got <- err
	}()
	if err := <-got; err != nil {
		t.Fatalf("another token's follower: %v", err)
	}
	// Closing a stream frees its place (the server notices at its next write or keepalive;
	// a new event makes that write happen at once).
	a.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.site("s"+strconv.FormatInt(time.Now().UnixNano()%1e6, 10), 1)
		r := follow()
		r.Body.Close()
		if r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed follower's place was never freed")
		}
	}
	b.Body.Close()
}

// Every event records who caused it and from where.
func TestEventsRecordTheirActor(t *testing.T) {
	clk := clock.NewFake(time.Now())
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour})
	h.site("ams", 1)
	ac, open := rawAgent(t, h, "ams", "n1")
	sess := open()
	apps := []api.NodeApp{{App: "hello", Pending: "1.0.0", Error: "no such release"}}
	if _, err := syncOnce(ac, sess.Token, api.Sync{Apps: &apps}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Hour)
	h.srv.Sweep(context.Background())
	evs, err := h.admin.Events(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	adminID, _ := splitToken(h.srv.AdminToken, prefixOperator)
	want := map[string]string{
		"site.added":    "token:" + adminID,
		"node.enrolled": "node:n1",
		"app.failed":    "node:n1",
		"node.down":     "system",
	}
	for _, e := range evs {
		actor, ok := want[e.Type]
		if !ok {
			continue
		}
		delete(want, e.Type)
		if e.Actor != actor {
			t.Errorf("%s: actor %q, want %q", e.Type, e.Actor, actor)
		}
		if actor == "system" {
			if e.Source != "" {
				t.Errorf("%s: source %q", e.Type, e.Source)
			}
		} else if e.Source != "127.0.0.1" {
			t.Errorf("%s: source %q, want 127.0.0.1", e.Type, e.Source)
		}
		if strings.HasPrefix(actor, "token:") && e.Role != api.RoleAdmin {
			t.Errorf("%s: role %q", e.Type, e.Role)
		}
	}
	if len(want) > 0 {
		t.Fatalf("no events of %v in %+v", want, evs)
	}
}

// Every API request leaves one structured access log line saying who asked for what.
func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	h := start(t, Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if _, err := h.admin.Sites(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.call("DELETE", "/v1/sites/nope", "")
	viewer, err := h.admin.CreateToken(context.Background(), api.TokenCreate{Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	h.call("POST", "/v1/sites", viewer.Secret) // refused: the log still names who asked
	adminID, _ := splitToken(h.srv.AdminToken, prefixOperator)
	want := []map[string]any{
		{"route": "GET /v1/sites", "method": "GET", "status": 200.0, "actor": "token:" + adminID, "source": "127.0.0.1"},
		{"route": "DELETE /v1/sites/{name}", "method": "DELETE", "status": 401.0, "actor": "anonymous", "source": "127.0.0.1"},
		{"route": "POST /v1/sites", "method": "POST", "status": 403.0, "actor": "token:" + viewer.ID, "source": "127.0.0.1"},
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) != nil || rec["msg"] != "request" || rec["route"] != w["route"] {
				continue
			}
			found = true
			for k, v := range w {
				if rec[k] != v {
					t.Errorf("%s: %s = %v, want %v", w["route"], k, rec[k], v)
				}
			}
			if _, ok := rec["duration"]; !ok {
				t.Errorf("%s: no duration", w["route"])
			}
		}
		if !found {
			t.Errorf("no access log line for %s in:\n%s", w["route"], buf.String())
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Addresses of one IPv6 /64 share a budget: a host cannot escape the limit by rotating them.
func TestIPv6SourcesShareTheirSlash64(t *testing.T) {
	l := newAddrLimits(1, 2)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	h := &Server{limits: l, clk: clock.NewFake(now)}
	req := func(addr string) error {
		return h.limitPublic(&http.Request{RemoteAddr: addr})
	}
	if req("[2001:db8::1]:1") != nil || req("[2001:db8::2]:1") != nil {
		t.Fatal("the first two requests of a /64 were refused")
	}
	if err := req("[2001:db8::3]:1"); err == nil {
		t.Fatal("a third address of the same /64 escaped the limit")
	}
	if err := req("[2001:db8:0:1::1]:1"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

// A revoked node's key cannot come back under another spelling of its base64.
func TestKeyEncodingIsCanonical(t *testing.T) {
	h := start(t, Config{})
	h.site("ams", 1)
	ac := h.client("")
	req, priv := signed(t, h.enrollToken("ams", 1), "n1")
	if _, err := ac.Enroll(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := h.admin.RemoveNode(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	// The same 32 bytes, with the last padding bit flipped: base64 decoders accept it.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	pk := []byte(req.PublicKey)
	pk[len(pk)-2] = alphabet[strings.IndexByte(alphabet, pk[len(pk)-2])^1]
	again := api.Enroll{Token: h.enrollToken("ams", 1), Name: "n2", PublicKey: string(pk)}
	if b, err := base64.StdEncoding.DecodeString(again.PublicKey); err != nil || string(b) != string(priv.Public().(ed25519.PublicKey)) {
		t.Fatalf("the test's other spelling does not decode to the same key: %v", err)
	}
	again.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.EnrollMessage(again.Token, "n2", again.PublicKey)))
	if _, err := ac.Enroll(context.Background(), again); client.StatusOf(err) != 400 {
		t.Fatalf("a revoked key enrolled again under another spelling: %v", err)
	}
}

// One node cannot flood the event log with app reports.
func TestAppReportsAreRateLimited(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour})
	h.site("ams", 1)
	ac, open := rawAgent(t, h, "ams", "n1")
	sess := open()
	report := func(i int) error {
		apps := []api.NodeApp{{App: "hello", Pending: "1.0.0", Error: "attempt " + strconv.Itoa(i)}}
		_, err := syncOnce(ac, sess.Token, api.Sync{Apps: &apps})
		return err
	}
	before := lastEventID(t, h.admin)
	accepted := 0
	var last error
	for i := 0; i < reportBurst+10; i++ {
		if last = report(i); last == nil {
			accepted++
		}
	}
	if accepted != reportBurst || client.StatusOf(last) != http.StatusTooManyRequests || client.RetryAfterOf(last) == 0 {
		t.Fatalf("%d of %d reports accepted, last %v", accepted, reportBurst+10, last)
	}
	if got := lastEventID(t, h.admin) - before; got > int64(reportBurst) {
		t.Fatalf("%d events from %d accepted reports", got, accepted)
	}
	clk.Advance(2 * time.Second)
	if err := report(1000); err != nil {
		t.Fatalf("after a pause: %v", err)
	}
	// Control characters in a report are refused, not stored.
	bad := []api.NodeApp{{App: "hello", Pending: "1.0.0", Error: "\x1b]0;owned\x07"}}
	if _, err := syncOnce(ac, sess.Token, api.Sync{Apps: &bad}); client.StatusOf(err) != 400 {
		t.Fatalf("control characters in a report: %v", err)
	}
}
