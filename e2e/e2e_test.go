package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/release"
)

var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		panic(err)
	}
	ferryBin = filepath.Join(dir, "ferry")
	args := []string{"build", "-o", ferryBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../cmd/ferry")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		os.Exit(1)
	}
	// A race-enabled binary sleeps a second at exit by default, which every CLI call would pay.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	code := pg.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running ferry child process.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

// syncBuf collects a child's output. The buffer is a field, not embedded: an embedded
// bytes.Buffer's ReadFrom would let os/exec copy into it around the lock.
type syncBuf struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	grew chan struct{} // closed and replaced at every write
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.grew != nil {
		close(b.grew)
	}
	b.grew = make(chan struct{})
	return b.buf.Write(p)
}

// waitFor waits until the output holds s; it fails the test after d.
func (b *syncBuf) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		found, grew := strings.Contains(b.buf.String(), s), b.grew
		if grew == nil {
			b.grew = make(chan struct{})
			grew = b.grew
		}
		b.mu.Unlock()
		if found {
			return
		}
		select {
		case <-grew:
		case <-deadline.C:
			t.Fatalf("output never said %q:\n%s", s, b.String())
		}
	}
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(ferryBin, args...)
	buf := &syncBuf{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: buf, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("process did not stop on SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("process exited %d after SIGTERM", code)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type fleet struct {
	t      *testing.T
	data   string
	listen string
	addr   string
	server *proc
	admin  *client.Client
	args   []string
	// clientCert and clientKey, when set, are presented to a server that requires them.
	clientCert, clientKey string
}

func newFleet(t *testing.T, extra ...string) *fleet {
	f := &fleet{t: t, data: t.TempDir(), listen: freeAddr(t), args: extra}
	f.addr = "https://" + f.listen
	f.startServer()
	return f
}

func (f *fleet) startServer() {
	f.t.Helper()
	f.server = startProc(f.t, append([]string{"server", "--data", f.data, "--listen", f.listen}, f.args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := f.client(); err == nil {
			if _, err := c.Sites(context.Background()); err == nil {
				f.admin = c
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("server did not come up: %s", f.server.out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for a child process to listen, not a deadline
	}
}

// ferry runs one CLI command against the fleet and returns stdout.
func (f *fleet) ferry(args ...string) (string, error) {
	cmd := exec.Command(ferryBin, args...)
	cmd.Env = f.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("ferry %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// client is an API client for the fleet with the admin token, trusting the server's own CA.
func (f *fleet) client() (*client.Client, error) {
	tok, err := os.ReadFile(filepath.Join(f.data, "admin.token"))
	if err != nil {
		return nil, err
	}
	c, err := client.New(f.addr, strings.TrimSpace(string(tok)))
	if err != nil {
		return nil, err
	}
	return c, c.UseTLS(pki.ClientOptions{CAFile: f.caFile(), CertFile: f.clientCert, KeyFile: f.clientKey})
}

// caFile is the CA the server made for itself.
func (f *fleet) caFile() string { return filepath.Join(f.data, "tls", "ca.pem") }

// env is the environment of a ferry CLI call against the fleet, as an operator sets it up.
func (f *fleet) env() []string {
	env := append(os.Environ(), "FERRY_ADDR="+f.addr, "FERRY_TOKEN="+adminToken(f), "FERRY_CACERT="+f.caFile())
	if f.clientCert != "" {
		env = append(env, "FERRY_CLIENT_CERT="+f.clientCert, "FERRY_CLIENT_KEY="+f.clientKey)
	}
	return env
}

func adminToken(f *fleet) string {
	b, _ := os.ReadFile(filepath.Join(f.data, "admin.token"))
	return strings.TrimSpace(string(b))
}

func (f *fleet) mustFerry(args ...string) string {
	f.t.Helper()
	out, err := f.ferry(args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// waitEvent follows the log (bounded) until typ about subject appears after since.
func (f *fleet) waitEvent(since int64, typ, subject string) api.Event {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	found, err := f.admin.WaitEvent(ctx, since, func(e api.Event) bool { return e.Type == typ && e.Subject == subject })
	if err != nil {
		f.t.Fatalf("waiting for %s %s: %v\nserver log:\n%s", typ, subject, err, f.server.out.String())
	}
	return found
}

func (f *fleet) lastEvent() int64 {
	f.t.Helper()
	evs, err := f.admin.Events(context.Background(), 0, 10000)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].ID
}

func (f *fleet) agent(name, token, dir string) *proc {
	return startProc(f.t, "agent", "--server", f.addr, "--token", token, "--data", dir, "--name", name, "--labels", "role=mirror")
}

func TestFleetLifecycle(t *testing.T) {
	f := newFleet(t, "--heartbeat-interval", "300ms", "--heartbeat-grace", "1500ms")
	f.mustFerry("site", "add", "ams", "--tier", "1", "--lat", "52.37", "--lon", "4.90", "--contact", "noc@ams.example.org")
	tok := strings.TrimSpace(f.mustFerry("token", "create", "--site", "ams", "--uses", "2"))
	if !strings.HasPrefix(tok, "ferry_e_") || strings.Contains(tok, "\n") {
		t.Fatalf("token create printed %q", tok)
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := f.agent("ams-01", tok, dirA)
	f.agent("ams-02", tok, dirB)
	f.waitEvent(0, "node.enrolled", "ams-01")
	f.waitEvent(0, "node.enrolled", "ams-02")

	var nodes []api.Node
	if err := json.Unmarshal([]byte(f.mustFerry("node", "list", "--selector", "site=ams,role=mirror", "-o", "json")), &nodes); err != nil || len(nodes) != 2 {
		t.Fatalf("node list: %+v %v", nodes, err)
	}
	for _, n := range nodes {
		if n.Status != "up" || n.Facts.OS == "" || n.Apps == nil {
			t.Fatalf("node %+v", n)
		}
	}
	if info, _ := os.Stat(filepath.Join(f.data, "admin.token")); info.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode %v", info.Mode().Perm())
	}

	// kill -9 an agent: down within the grace period (the event arrives; nothing sleeps).
	since := f.lastEvent()
	a.kill()
	f.waitEvent(since, "node.down", "ams-01")
	if out := f.mustFerry("node", "list", "--status", "down"); !strings.Contains(out, "ams-01") || strings.Contains(out, "ams-02") {
		t.Fatalf("down nodes:\n%s", out)
	}
	// Restarted with the same data dir and no token: same identity, up again.
	since = f.lastEvent()
	a = startProc(t, "agent", "--server", f.addr, "--data", dirA)
	f.waitEvent(since, "node.up", "ams-01")

	// Restart the server: every node and event is still there, and agents reconnect.
	before := f.lastEvent()
	f.server.stop(t)
	f.startServer()
	if got := f.lastEvent(); got < before {
		t.Fatalf("events lost across restart: %d < %d", got, before)
	}
	out := f.mustFerry("node", "list")
	if !strings.Contains(out, "ams-01") || !strings.Contains(out, "ams-02") {
		t.Fatalf("nodes after restart:\n%s", out)
	}
	since = f.lastEvent()
	f.mustFerry("node", "label", "ams-01", "zone=b")
	f.waitEvent(since, "node.labeled", "ams-01")
	// The relabelled agent receives the new generation and saves it in its data dir.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dirA, "desired.json"))
		var d api.Desired
		if json.Unmarshal(b, &d) == nil && d.Labels["zone"] == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never got the label; desired.json = %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Revocation: the agent is refused from then on.
	f.mustFerry("node", "rm", "ams-02")
	if _, err := f.ferry("site", "rm", "ams"); err == nil || !strings.Contains(err.Error(), "has 1 node") {
		t.Fatalf("site rm with nodes: %v", err)
	}
	f.mustFerry("site", "rm", "ams", "--force")
	if out := f.mustFerry("site", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("sites after rm: %s", out)
	}
}

// TestFollowAcrossRestart: events --follow (the real CLI) keeps streaming across a server
// restart with no gap and no duplicate.
func TestFollowAcrossRestart(t *testing.T) {
	f := newFleet(t)
	follower := exec.Command(ferryBin, "events", "--follow", "-o", "json")
	follower.Env = f.env()
	stdout, _ := follower.StdoutPipe()
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follower.Process.Kill(); follower.Wait() }()
	ids := make(chan int64, 1000)
	go func() {
		dec := json.NewDecoder(bufio.NewReader(stdout))
		for {
			var e api.Event
			if dec.Decode(&e) != nil {
				close(ids)
				return
			}
			ids <- e.ID
		}
	}()
	for i := 0; i < 5; i++ {
		f.mustFerry("site", "add", fmt.Sprintf("a%d", i), "--tier", "2")
	}
	f.server.stop(t)
	f.startServer()
	for i := 0; i < 5; i++ {
		f.mustFerry("site", "add", fmt.Sprintf("b%d", i), "--tier", "3")
	}
	last := f.lastEvent()
	var got []int64
	timeout := time.After(30 * time.Second)
	for len(got) == 0 || got[len(got)-1] < last {
		select {
		case id, ok := <-ids:
			if !ok {
				t.Fatalf("follower ended; got %v", got)
			}
			got = append(got, id)
		case <-timeout:
			t.Fatalf("follower got %v, want up to %d", got, last)
		}
	}
	for i, id := range got {
		if id != int64(i+1) {
			t.Fatalf("follower saw %v: gap or duplicate at %d", got, i)
		}
	}
}

// TestKill9LosesNoAcknowledgedWrite adds sites as fast as it can, kills the server with
// SIGKILL in the middle, and checks every acknowledged site is there after a restart.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	f := newFleet(t)
	var acked []string
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5000 && ctx.Err() == nil; i++ {
			name := fmt.Sprintf("s%d", i)
			if _, err := f.admin.AddSite(ctx, client.SiteAdd{Name: name, Tier: 2}); err != nil {
				return
			}
			mu.Lock()
			acked = append(acked, name)
			mu.Unlock()
		}
	}()
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 50 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.server.kill()
	cancel()
	<-done
	f.startServer()
	sites, err := f.admin.Sites(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range sites {
		have[s.Name] = true
	}
	for _, name := range acked {
		if !have[name] {
			t.Fatalf("acknowledged site %s lost after kill -9 (%d acknowledged, %d present)", name, len(acked), len(sites))
		}
	}
	evs, _ := f.admin.Events(context.Background(), 0, 10000)
	added := 0
	for _, e := range evs {
		if e.Type == "site.added" {
			added++
		}
	}
	if added != len(sites) {
		t.Fatalf("%d sites but %d site.added events: state and log disagree", len(sites), added)
	}
}

func TestCLIErrorsAndExitCodes(t *testing.T) {
	f := newFleet(t)
	otherCA, err := pki.EnsureServerCert(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"site", "add", "x"}, 2, "--tier is required"},
		{[]string{"site", "add"}, 2, "accepts 1 arg"},
		{[]string{"nosuch"}, 2, "unknown command"},
		{[]string{"node", "list", "--bogus"}, 2, "unknown flag"},
		{[]string{"node", "list", "-o", "yaml"}, 2, "invalid --output"},
		{[]string{"node", "list", "--selector", "a=b=c"}, 2, "invalid selector"},
		{[]string{"site", "show", "nope"}, 1, "not found"},
		{[]string{"site", "add", "Bad", "--tier", "1"}, 1, "invalid site name"},
		{[]string{"--token", "wrong", "site", "list"}, 1, "invalid API token"},
		{[]string{"--server", "http://127.0.0.1:1", "site", "list"}, 1, "cannot reach"},
		{[]string{"--server", "http://" + f.listen, "site", "list"}, 1, "HTTPS server"},
		{[]string{"--ca-cert", otherCA.CA, "site", "list"}, 1, "set FERRY_CACERT (or --ca-cert)"},
		{[]string{"--ca-cert", filepath.Join(t.TempDir(), "nope.pem"), "site", "list"}, 2, "no such file"},
		{[]string{"release", "build", "."}, 2, "-o FILE is required"},
		{[]string{"release", "build", ".", "-o", filepath.Join(t.TempDir(), "b.tar.gz")}, 1, "no ferry.yaml"},
	}
	for _, c := range cases {
		cmd := exec.Command(ferryBin, c.args...)
		cmd.Env = f.env()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		msg := strings.TrimSpace(stderr.String())
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(msg, c.msg) || strings.Count(msg, "\n") != 0 {
			t.Errorf("ferry %v: exit %d, stderr %q; want exit %d and one line with %q", c.args, code, msg, c.code, c.msg)
		}
	}
}

func TestAgentRefusedEnrollmentExits(t *testing.T) {
	f := newFleet(t)
	f.mustFerry("site", "add", "ams", "--tier", "1")
	tok := strings.TrimSpace(f.mustFerry("token", "create", "--site", "ams"))
	// A real agent refused at enrollment exits 1 with a clear message instead of retrying.
	p := startProc(t, "agent", "--server", f.addr, "--token", tok, "--data", t.TempDir(), "--name", "Bad_Name")
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("agent with a bad name kept running")
	}
	if p.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(p.out.String(), "invalid node name") {
		t.Fatalf("exit %d: %s", p.cmd.ProcessState.ExitCode(), p.out.String())
	}
}

func TestSigningKeys(t *testing.T) {
	f := newFleet(t)
	keyDir := t.TempDir()
	cmd := exec.Command(ferryBin, "key", "gen", "--dir", keyDir, "--no-password")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("key gen: %v\n%s", err, out)
	}
	pubFile := filepath.Join(keyDir, "ferry.pub")
	out := f.mustFerry("key", "trust", pubFile, "--comment", "release team", "-o", "json")
	var k api.SigningKey
	if err := json.Unmarshal([]byte(out), &k); err != nil || len(k.ID) != 16 || k.Comment != "release team" {
		t.Fatalf("key trust: %s %v", out, err)
	}
	if _, err := f.ferry("key", "trust", pubFile); err == nil || !strings.Contains(err.Error(), "already trusted") {
		t.Fatalf("trust twice: %v", err)
	}
	f.mustFerry("key", "revoke", k.ID)
	if _, err := f.ferry("key", "trust", pubFile); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("trust a revoked key: %v", err)
	}
	if out := f.mustFerry("key", "list"); !strings.Contains(out, k.ID) || !strings.Contains(out, "revoked") {
		t.Fatalf("key list:\n%s", out)
	}
	cmd = exec.Command(ferryBin, "key", "trust", "not-a-key")
	cmd.Env = f.env()
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("trust garbage: %v, exit %d", err, cmd.ProcessState.ExitCode())
	}
}

// TestReleaseBuildSignPush: the operator path end to end with the real CLI, signed once with
// ferry's own key and once with the stock minisign tool.
func TestReleaseBuildSignPush(t *testing.T) {
	f := newFleet(t)
	keyDir := t.TempDir()
	env := append(f.env(), "FERRY_KEY_DIR="+keyDir)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(ferryBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ferry %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("key", "gen", "--no-password")
	run("key", "trust", filepath.Join(keyDir, "ferry.pub"))
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: 1.4.0\nclass: minor\nprocesses:\n  - {name: web, command: [bin/hello]}\n"), 0o644)
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "hello"), []byte("#!/bin/sh\n"), 0o755)
	bundle := filepath.Join(t.TempDir(), "hello-1.4.0.tar.gz")
	run("release", "build", src, "-o", bundle)
	run("release", "sign", bundle)
	if out := run("release", "push", bundle); !strings.Contains(out, "hello@1.4.0 pushed") || !strings.Contains(out, "unstable") {
		t.Fatalf("push: %s", out)
	}

	// The same bundle signed by a key made with the stock minisign tool.
	ms, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatal("minisign is missing: run the suite with make test")
	}
	msDir := t.TempDir()
	if out, err := exec.Command(ms, "-G", "-W", "-p", filepath.Join(msDir, "m.pub"), "-s", filepath.Join(msDir, "m.key")).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v %s", err, out)
	}
	run("key", "trust", filepath.Join(msDir, "m.pub"))
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: 1.5.0\nclass: minor\n"), 0o644)
	bundle2 := filepath.Join(t.TempDir(), "hello-1.5.0.tar.gz")
	run("release", "build", src, "-o", bundle2)
	if out, err := exec.Command(ms, "-S", "-s", filepath.Join(msDir, "m.key"), "-m", bundle2).CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v %s", err, out)
	}
	run("release", "push", bundle2)
	var rels []api.Release
	if err := json.Unmarshal([]byte(run("release", "list", "hello", "-o", "json")), &rels); err != nil || len(rels) != 2 || rels[0].SignedBy == rels[1].SignedBy {
		t.Fatalf("release list: %+v %v", rels, err)
	}
}

// TestKill9DuringPush: a server killed mid-upload keeps no partial blob and no release.
func TestKill9DuringPush(t *testing.T) {
	f := newFleet(t)
	// A well-formed bundle, so the server's checks keep reading the upload.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, release.ManifestName), []byte("app: big\nversion: 1.0.0\nclass: minor\n"), 0o644)
	noise := make([]byte, 8<<20)
	rand.Read(noise)
	os.WriteFile(filepath.Join(src, "data"), noise, 0o644)
	var b bytes.Buffer
	if _, _, err := release.Build(src, &b); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := f.admin.PushRelease(context.Background(), pr, int64(b.Len()), nil)
		errc <- err
	}()
	if _, err := pw.Write(b.Bytes()[:1<<20]); err != nil { // 1 MiB of 8 sent
		t.Fatal(err)
	}
	// Wait until the server has the partial upload on disk, then kill it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		tmps, _ := filepath.Glob(filepath.Join(f.data, "blobs", "tmp", "*"))
		if len(tmps) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never reached the server's disk")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.server.kill()
	pw.CloseWithError(io.ErrUnexpectedEOF)
	if err := <-errc; err == nil {
		t.Fatal("push to a killed server succeeded")
	}
	f.startServer()
	var left []string
	filepath.Walk(filepath.Join(f.data, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Fatalf("partial upload left %v", left)
	}
	if rels, err := f.admin.Releases(context.Background(), ""); err != nil || len(rels) != 0 {
		t.Fatalf("releases after a killed push: %+v %v", rels, err)
	}
}

// TestChannelLifecycle: push → promote → (server restart) → withdraw → republish with an epoch
// → bulletin, through the real CLI.
func TestChannelLifecycle(t *testing.T) {
	f := newFleet(t)
	keyDir := t.TempDir()
	env := append(f.env(), "FERRY_KEY_DIR="+keyDir)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(ferryBin, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			return out.String(), fmt.Errorf("%v: %s", err, errb.String())
		}
		return out.String(), nil
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("ferry %v: %v", args, err)
		}
		return out
	}
	must("key", "gen", "--no-password")
	must("key", "trust", filepath.Join(keyDir, "ferry.pub"))
	src := t.TempDir()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: "+v+"\nclass: minor\n"), 0o644)
		b := filepath.Join(t.TempDir(), "hello.tar.gz")
		must("release", "build", src, "-o", b)
		must("release", "sign", b)
		must("release", "push", b)
		must("release", "promote", "hello@"+v, "--to", "preview")
	}
	if _, err := run("release", "promote", "hello@1.1.0", "--to", "unstable"); err == nil {
		t.Fatal("promote into a channel it is already in succeeded")
	}
	must("release", "promote", "hello@1.0.0", "--to", "production")
	must("release", "promote", "hello@1.1.0", "--to", "production")

	f.server.stop(t)
	f.startServer()

	candidate := func(channel string) string {
		t.Helper()
		var ch api.Channel
		if err := json.Unmarshal([]byte(must("channel", "show", channel, "-o", "json")), &ch); err != nil {
			t.Fatal(err)
		}
		return ch.Candidates["hello"]
	}
	if c := candidate("production"); c != "1.1.0" {
		t.Fatalf("production candidate %q, want 1.1.0", c)
	}
	must("release", "withdraw", "hello@1.1.0", "--reason", "crashes on start")
	if c := candidate("production"); c != "1.0.0" {
		t.Fatalf("after withdrawal production offers %q, want the fallback 1.0.0", c)
	}
	if out := must("release", "list", "hello"); !regexp.MustCompile(`(?m)^hello\s+1\.1\.0\s+minor\s+withdrawn\s`).MatchString(out) {
		t.Fatalf("release list does not mark the withdrawn release:\n%s", out)
	}
	if out, err := run("release", "promote", "hello@1.1.0", "--to", "production"); err == nil || !strings.Contains(err.Error(), "withdrawn (reason: crashes on start)") {
		t.Fatalf("promote a withdrawn release: %s %v", out, err)
	}
	// Downgrade by upgrading: 1.0.0's content as 1:1.0.0, above every epoch-0 version.
	must("release", "republish", "hello@1.0.0", "--epoch", "1")
	must("release", "promote", "hello@1:1.0.0", "--to", "production", "--force")
	if c := candidate("production"); c != "1:1.0.0" {
		t.Fatalf("production candidate %q, want 1:1.0.0", c)
	}
	var r0, r1 api.Release
	json.Unmarshal([]byte(must("release", "show", "hello@1.0.0", "-o", "json")), &r0)
	json.Unmarshal([]byte(must("release", "show", "hello@1:1.0.0", "-o", "json")), &r1)
	if r0.SHA256 == "" || r0.SHA256 != r1.SHA256 {
		t.Fatalf("republished content differs: %s vs %s", r0.SHA256, r1.SHA256)
	}
	var b api.Bulletin
	if err := json.Unmarshal([]byte(must("bulletin", "hello", "-o", "json")), &b); err != nil || len(b.Apps) != 1 ||
		b.Apps[0].Channels["production"] != "1:1.0.0" || b.Apps[0].Channels["unstable"] != "1:1.0.0" {
		t.Fatalf("bulletin: %+v %v", b, err)
	}
	if out := must("bulletin", "--runs", "hello@1.0.0"); !strings.Contains(out, "sites running hello@1.0.0") {
		t.Fatalf("bulletin --runs: %s", out)
	}
	hist := must("channel", "show", "production")
	for _, want := range []string{"promoted", "withdrawn", "crashes on start", "forced"} {
		if !strings.Contains(hist, want) {
			t.Fatalf("production history lacks %q:\n%s", want, hist)
		}
	}
	must("channel", "create", "canary", "--after", "preview")
	if out := must("channel", "list"); !strings.Contains(out, "canary") {
		t.Fatalf("channel list:\n%s", out)
	}
}
