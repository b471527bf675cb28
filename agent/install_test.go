package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/signing"
)

// rig is a real server on loopback with one site, a trusted signing key and an untrusted one.
type rig struct {
	t        *testing.T
	ctx      context.Context
	dataDir  string
	addr     string
	admin    *client.Client
	token    string
	key      minisign.PrivateKey
	keyText  string // the trusted key's .pub text
	otherPub string // a key the server does not trust
	plain    bool   // the server serves plain HTTP
	// heartbeat is the server's heartbeat interval (0: its default); a node is down after 3.
	heartbeat time.Duration
	stop      func() // stops the server
}

// serve starts the server on listen, over the rig's data directory.
func (r *rig) serve(listen string) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(r.ctx)
	srv, err := server.New(ctx, server.Config{DataDir: r.dataDir, InsecureHTTP: r.plain, HeartbeatInterval: r.heartbeat,
		HeartbeatGrace: 3 * r.heartbeat, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		r.t.Fatal(err)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, l) }()
	r.stop = func() { cancel(); <-done }
	r.t.Cleanup(r.stop)
	r.addr = srv.Scheme() + "://" + l.Addr().String()
	r.admin, _ = client.New(r.addr, srv.AdminToken)
	if r.plain {
		return
	}
	if err := r.admin.UseTLS(pki.ClientOptions{CAFile: srv.CAFile}); err != nil {
		r.t.Fatal(err)
	}
}

func newRig(t *testing.T) *rig { return startRig(t, false, 0) }

// newPlainRig is a rig whose server serves plain HTTP, for proxies that read what passes.
func newPlainRig(t *testing.T) *rig { return startRig(t, true, 0) }

// startRig starts a rig whose agents check in every heartbeat (0: the server's default).
func startRig(t *testing.T, plain bool, heartbeat time.Duration) *rig {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx, dataDir: t.TempDir(), plain: plain, heartbeat: heartbeat}
	r.serve("127.0.0.1:0")
	if _, err := r.admin.AddSite(ctx, client.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	tok, err := r.admin.CreateToken(ctx, api.TokenCreate{Site: "ams", Uses: 20})
	if err != nil {
		t.Fatal(err)
	}
	r.token = tok.Secret
	keys := t.TempDir()
	if _, err := signing.GenerateKeyPair(keys, ""); err != nil {
		t.Fatal(err)
	}
	if r.key, err = signing.LoadSecretKey(filepath.Join(keys, signing.SecretKeyFile), ""); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(keys, signing.PublicKeyFile))
	r.keyText = string(pub)
	if _, err := r.admin.TrustKey(ctx, api.KeyTrust{PublicKey: r.keyText}); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := signing.GenerateKeyPair(other, ""); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(other, signing.PublicKeyFile))
	r.otherPub = string(b)
	return r
}

// push builds hello@version (bin/hello says the version), signs it unless unsigned, and pushes it.
func (r *rig) push(version string, signed bool) api.Release {
	r.t.Helper()
	return r.pushPadded(version, signed, 0)
}

// pushPadded is push of a bundle that also holds pad random bytes, so its blob is at least
// that large.
func (r *rig) pushPadded(version string, signed bool, pad int) api.Release {
	r.t.Helper()
	dir := r.t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	if pad > 0 {
		b := make([]byte, pad)
		rand.Read(b)
		os.WriteFile(filepath.Join(dir, "data.bin"), b, 0o644)
	}
	// No processes: these tests are about fetching and verifying (run_test.go runs services).
	os.WriteFile(filepath.Join(dir, release.ManifestName), []byte("app: hello\nversion: "+version+"\nclass: minor\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bin/hello"), []byte("#!/bin/sh\necho "+version+"\n"), 0o755)
	file := filepath.Join(r.t.TempDir(), "hello.tar.gz")
	var b bytes.Buffer
	if _, _, err := release.Build(dir, &b); err != nil {
		r.t.Fatal(err)
	}
	os.WriteFile(file, b.Bytes(), 0o644)
	var sig []byte
	if signed {
		sigFile, err := signing.SignFile(r.key, file, "hello "+version)
		if err != nil {
			r.t.Fatal(err)
		}
		sig, _ = os.ReadFile(sigFile)
	}
	rel, err := r.admin.PushRelease(r.ctx, bytes.NewReader(b.Bytes()), int64(b.Len()), sig)
	if err != nil {
		r.t.Fatal(err)
	}
	return rel
}

func (r *rig) deploy(release, selector string) {
	r.t.Helper()
	res, err := r.admin.Deploy(r.ctx, api.Deploy{Release: release, Selector: selector})
	if err != nil || len(res.Nodes) == 0 {
		r.t.Fatalf("deploy %s to %s: %+v %v", release, selector, res, err)
	}
}

// node is one running agent with its data directory.
type node struct {
	name string
	dir  string
	a    *agent.Agent
	stop func()
}

func (r *rig) start(name, dir string, cfg agent.Config) *node {
	r.t.Helper()
	if cfg.Server == "" {
		cfg.Server = r.addr
	}
	cfg.Token, cfg.DataDir, cfg.Name = r.token, dir, name
	cfg.Labels = map[string]string{"role": name}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a, err := agent.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	n := &node{name: name, dir: dir, a: a, stop: func() { cancel(); <-done }}
	r.t.Cleanup(n.stop)
	wctx, wcancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer wcancel()
	if _, err := r.admin.WaitEvent(wctx, 0, func(e api.Event) bool { return e.Type == "node.enrolled" && e.Subject == name }); err != nil {
		r.t.Fatalf("agent %s did not enroll: %v", name, err)
	}
	return n
}

// waitApp waits until the server's view of node's hello app satisfies ok: it looks again
// after each of the node's events, from the first, since every change of an app's state is one.
func (r *rig) waitApp(name string, ok func(api.NodeApp) bool) api.NodeApp {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
	defer cancel()
	var last api.Node
	var found api.NodeApp
	_, err := r.admin.WaitEvent(ctx, 0, func(e api.Event) bool {
		if e.Subject != name {
			return false
		}
		n, err := r.admin.Node(ctx, name)
		if err != nil {
			return false
		}
		last = n
		for _, a := range n.Apps {
			if a.App == "hello" && ok(a) {
				found = a
				return true
			}
		}
		return false
	})
	if err != nil {
		r.t.Fatalf("node %s never reached the expected app state (%v); last: %+v", name, err, last.Apps)
	}
	return found
}

func installed(version string) func(api.NodeApp) bool {
	return func(a api.NodeApp) bool { return a.Version == version && a.Pending == "" && a.Error == "" }
}

func failedWith(pending, msg string) func(api.NodeApp) bool {
	return func(a api.NodeApp) bool { return a.Pending == pending && strings.Contains(a.Error, msg) }
}

// running returns what the node's current hello release says it is, "" when there is none.
func running(t *testing.T, n *node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "apps/hello/current/bin/hello"))
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(strings.TrimSpace(string(b)), "#!/bin/sh\necho ")
}

// Agents verify every release again before installing it: its sha256, and its signature
// against the keys the node trusts — the server's trusted keys by default, or keys pinned on
// the node — never a revoked one. What fails to verify is not installed and the node keeps
// running its whole current release.
func TestAgentsVerifyBeforeInstalling(t *testing.T) {
	r := newRig(t)
	follow := r.start("follow", t.TempDir(), agent.Config{})
	pinned := r.start("pinned", t.TempDir(), agent.Config{TrustedKeys: []string{r.keyText}})
	stranger := r.start("stranger", t.TempDir(), agent.Config{TrustedKeys: []string{r.otherPub}})

	r.push("1.0.0", true)
	r.deploy("hello@1.0.0", "site=ams")
	r.waitApp("follow", installed("1.0.0"))
	r.waitApp("pinned", installed("1.0.0"))
	r.waitApp("stranger", failedWith("1.0.0", "signature does not verify"))
	if running(t, follow) != "1.0.0" || running(t, pinned) != "1.0.0" {
		t.Fatalf("installed trees: follow %q, pinned %q", running(t, follow), running(t, pinned))
	}
	if got := running(t, stranger); got != "" {
		t.Fatalf("a node pinned to another key installed %q", got)
	}
	if evs, _ := r.admin.Events(r.ctx, 0, 1000); !hasEvent(evs, "app.failed", "stranger") || !hasEvent(evs, "app.installed", "follow") {
		t.Fatalf("events: %+v", evs)
	}

	t.Run("upgrade switches and keeps the previous release", func(t *testing.T) {
		r.push("1.1.0", true)
		r.deploy("hello@1.1.0", "role=follow")
		r.waitApp("follow", installed("1.1.0"))
		r.push("1.2.0", true)
		r.deploy("hello@1.2.0", "role=follow")
		r.waitApp("follow", installed("1.2.0"))
		if running(t, follow) != "1.2.0" {
			t.Fatalf("current is %q", running(t, follow))
		}
		ents, _ := os.ReadDir(filepath.Join(follow.dir, "apps/hello/releases"))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if fmt.Sprint(names) != "[1.1.0 1.1.0.json 1.2.0 1.2.0.json]" {
			t.Fatalf("releases kept: %v", names)
		}
		if b, _ := r.admin.Bulletin(r.ctx, "hello", "hello@1.2.0"); fmt.Sprint(b.RunsSites) != "[ams]" || b.Apps[0].Sites["ams"]["1.0.0"] != 1 {
			t.Fatalf("bulletin: %+v", b)
		}
	})

	t.Run("a blob that does not match its digest is refused", func(t *testing.T) {
		rel := r.push("1.2.1", true)
		blob := filepath.Join(r.dataDir, "blobs", "sha256", rel.SHA256[:2], rel.SHA256)
		if _, err := os.Stat(blob); err != nil {
			t.Fatalf("blob layout changed: %v", err)
		}
		whole, _ := os.ReadFile(blob)
		os.WriteFile(blob, bytes.Repeat([]byte{'x'}, int(rel.Size)), 0o644)
		r.deploy("hello@1.2.1", "role=follow")
		r.waitApp("follow", failedWith("1.2.1", "sha256"))
		if running(t, follow) != "1.2.0" {
			t.Fatalf("current is %q", running(t, follow))
		}
		// The damaged download was dropped; once the source is whole again, a retry installs it.
		os.WriteFile(blob, whole, 0o644)
		r.waitApp("follow", installed("1.2.1"))
		if running(t, follow) != "1.2.1" {
			t.Fatalf("current is %q", running(t, follow))
		}
	})

	t.Run("unsigned releases only with --allow-unsigned", func(t *testing.T) {
		if _, err := r.admin.SetChannel(r.ctx, "unstable", api.ChannelSet{AllowUnsigned: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		r.push("1.2.2", false)
		lax := r.start("lax", t.TempDir(), agent.Config{AllowUnsigned: true})
		r.deploy("hello@1.2.2", "role=follow")
		r.deploy("hello@1.2.2", "role=lax")
		r.waitApp("follow", failedWith("1.2.2", "unsigned"))
		r.waitApp("lax", installed("1.2.2"))
		if running(t, lax) != "1.2.2" || running(t, follow) != "1.2.1" {
			t.Fatalf("lax %q, follow %q", running(t, lax), running(t, follow))
		}
	})

	t.Run("a withdrawn release is not installed", func(t *testing.T) {
		pinned.stop()
		r.push("1.3.0", true)
		r.deploy("hello@1.3.0", "role=pinned")
		if _, err := r.admin.Withdraw(r.ctx, "hello", "1.3.0", "corrupts the cache"); err != nil {
			t.Fatal(err)
		}
		pinned = r.start("pinned", pinned.dir, agent.Config{TrustedKeys: []string{r.keyText}})
		r.waitApp("pinned", failedWith("1.3.0", "withdrawn (corrupts the cache)"))
		if running(t, pinned) != "1.0.0" {
			t.Fatalf("current is %q", running(t, pinned))
		}
	})

	t.Run("a signature by a key revoked since the push is refused", func(t *testing.T) {
		follow.stop()
		pinned.stop()
		r.push("1.4.0", true)
		r.deploy("hello@1.4.0", "role=follow")
		r.deploy("hello@1.4.0", "role=pinned")
		keys, _ := r.admin.Keys(r.ctx)
		if err := r.admin.RevokeKey(r.ctx, keys[0].ID); err != nil {
			t.Fatal(err)
		}
		follow = r.start("follow", follow.dir, agent.Config{})
		pinned = r.start("pinned", pinned.dir, agent.Config{TrustedKeys: []string{r.keyText}})
		r.waitApp("follow", failedWith("1.4.0", "no trusted, unrevoked signing key"))
		r.waitApp("pinned", failedWith("1.4.0", "no trusted, unrevoked signing key"))
		if running(t, follow) != "1.2.1" || running(t, pinned) != "1.0.0" {
			t.Fatalf("follow %q, pinned %q", running(t, follow), running(t, pinned))
		}
	})
}

// A download cut off part-way resumes with a Range request instead of starting over.
func TestInstallResumesDownload(t *testing.T) {
	r := newRig(t)
	rel := r.push("1.0.0", true)
	blob, err := os.ReadFile(filepath.Join(r.dataDir, "blobs", "sha256", rel.SHA256[:2], rel.SHA256))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(blob); hex.EncodeToString(sum[:]) != rel.SHA256 {
		t.Fatal("blob on disk is not the release")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "downloads"), 0o700)
	os.WriteFile(filepath.Join(dir, "downloads", rel.SHA256+".part"), blob[:len(blob)/2], 0o600)
	n := r.start("n1", dir, agent.Config{})
	r.deploy("hello@1.0.0", "site=ams")
	r.waitApp("n1", installed("1.0.0"))
	if running(t, n) != "1.0.0" {
		t.Fatalf("current is %q", running(t, n))
	}
	resp, err := r.admin.HTTP.Get(r.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	var ranged, whole bool
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, "ferry_http_request_duration_seconds_count") && strings.Contains(line, "/v1/blobs/") {
			ranged = ranged || strings.Contains(line, `code="206"`)
			whole = whole || strings.Contains(line, `code="200"`)
		}
	}
	if !ranged || whole {
		t.Fatalf("want one ranged blob request and no whole one; metrics:\n%s", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "downloads", rel.SHA256+".part")); err == nil {
		t.Fatal("the finished download was left behind")
	}
}

func hasEvent(evs []api.Event, typ, subject string) bool {
	for _, e := range evs {
		if e.Type == typ && e.Subject == subject {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// An install that failed because the server could not serve the blob is retried as soon as the
// server answers again, not when the retry backoff (on the agent's clock, which this test never
// moves that far) runs out.
func TestInstallRetriesWhenServerReturns(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	n := r.start("n1", t.TempDir(), agent.Config{Clock: clk})
	rel := r.push("1.0.0", true)
	blob := filepath.Join(r.dataDir, "blobs", "sha256", rel.SHA256[:2], rel.SHA256)
	if err := os.Rename(blob, blob+".away"); err != nil {
		t.Fatal(err)
	}
	r.deploy("hello@1.0.0", "site=ams")
	r.waitApp("n1", failedWith("1.0.0", "not found"))

	r.stop()
	os.Rename(blob+".away", blob)
	// The agent's stream breaks; it waits on its clock to reconnect (the only wait that short),
	// as the install waits to retry.
	wctx, wcancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer wcancel()
	if err := clk.WaitDue(wctx, 200*time.Millisecond); err != nil {
		t.Fatalf("the agent is not waiting to reconnect (%d timers): %v", clk.Pending(), err)
	}
	r.serve(strings.TrimPrefix(r.addr, "https://"))
	clk.Advance(300 * time.Millisecond) // the reconnection (≤ 200ms), not the install retry (≥ 500ms)
	r.waitApp("n1", installed("1.0.0"))
	if running(t, n) != "1.0.0" {
		t.Fatalf("current is %q", running(t, n))
	}
}
