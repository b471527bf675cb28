package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// TestDeployInstallsVerifiedReleases: the operator path from a signed bundle to files on the
// nodes, with the real CLI and real agent processes — one agent pinned to the signing key, one
// trusting the server's keys — and an agent killed with -9 in the middle of an install, which
// keeps its whole old release and finishes the new one when it comes back.
func TestDeployInstallsVerifiedReleases(t *testing.T) {
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
	pub := filepath.Join(keyDir, "ferry.pub")
	run("key", "trust", pub)
	run("site", "add", "ams", "--tier", "1")
	tok := strings.TrimSpace(run("token", "create", "--site", "ams", "--uses", "5"))

	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	bundle := func(version string, padding int) string {
		t.Helper()
		os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: "+version+"\nclass: minor\n"), 0o644)
		os.WriteFile(filepath.Join(src, "bin", "hello"), []byte("#!/bin/sh\necho "+version+"\n"), 0o755)
		pad := make([]byte, padding)
		rand.Read(pad) // incompressible, so the download takes a while
		os.WriteFile(filepath.Join(src, "data.bin"), pad, 0o644)
		out := filepath.Join(t.TempDir(), "hello-"+version+".tar.gz")
		run("release", "build", src, "-o", out)
		run("release", "sign", out)
		run("release", "push", out)
		return out
	}
	bundle("1.0.0", 1024)

	// The pinned agent reaches the server through a slow link, so an install takes seconds.
	slow := throttle(t, f.listen, 1<<20)
	dirs := map[string]string{"pinned": t.TempDir(), "follow": t.TempDir()}
	agents := map[string]*proc{
		"pinned": startProc(t, "agent", "--server", slow, "--token", tok, "--data", dirs["pinned"], "--name", "pinned", "--labels", "role=pinned", "--trust", pub),
		"follow": startProc(t, "agent", "--server", f.addr, "--token", tok, "--data", dirs["follow"], "--name", "follow"),
	}
	f.waitEvent(0, "node.enrolled", "pinned")
	f.waitEvent(0, "node.enrolled", "follow")
	out := run("deploy", "hello@1.0.0", "--selector", "site=ams", "--wait", "--timeout", "60s")
	if !strings.Contains(out, "assigned to 2 node(s)") || !strings.Contains(out, "pinned: installed hello@1.0.0") ||
		!strings.Contains(out, "follow: installed hello@1.0.0") || !strings.Contains(out, "(2/2)") {
		t.Fatalf("deploy --wait: %s", out)
	}
	current := func(node string) string {
		b, _ := os.ReadFile(filepath.Join(dirs[node], "apps", "hello", "current", "bin", "hello"))
		return strings.TrimPrefix(strings.TrimSpace(string(b)), "#!/bin/sh\necho ")
	}
	for node := range dirs {
		if got := current(node); got != "1.0.0" {
			t.Fatalf("%s runs %q", node, got)
		}
	}
	if out := run("node", "show", "pinned"); !strings.Contains(out, "app hello") || !strings.Contains(out, "1.0.0") {
		t.Fatalf("node show: %s", out)
	}
	if out := run("node", "list"); strings.Count(out, "hello@1.0.0") != 2 {
		t.Fatalf("node list: %s", out)
	}
	var b api.Bulletin
	if err := json.Unmarshal([]byte(run("bulletin", "hello", "-o", "json")), &b); err != nil || b.Apps[0].Sites["ams"]["1.0.0"] != 2 {
		t.Fatalf("bulletin: %+v %v", b, err)
	}
	if out, err := f.ferry("deploy", "hello@9.9.9", "--selector", "site=ams"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("deploy of a missing release: %s %v", out, err)
	}

	// An unsigned release, allowed into a test channel, is refused by both agents: --wait
	// reports that they gave up on it and exits 1; both keep running 1.0.0.
	run("channel", "set", "unstable", "--allow-unsigned=true")
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: 1.0.1\nclass: minor\n"), 0o644)
	unsigned := filepath.Join(t.TempDir(), "hello-1.0.1.tar.gz")
	run("release", "build", src, "-o", unsigned)
	run("release", "push", unsigned)
	waitOut, err := f.ferry("deploy", "hello@1.0.1", "--selector", "site=ams", "--wait", "--timeout", "60s")
	if err == nil || !strings.Contains(err.Error(), "2 of 2 node(s) gave up on hello@1.0.1") || !strings.Contains(waitOut, "unsigned") {
		t.Fatalf("deploy --wait of an unsigned release: %s %v", waitOut, err)
	}
	for node := range dirs {
		if got := current(node); got != "1.0.0" {
			t.Fatalf("%s runs %q", node, got)
		}
	}

	// Kill -9 mid-install: the old release stays whole; the restarted agent finishes the job.
	bundle("1.1.0", 3<<20)
	since := f.lastEvent()
	run("deploy", "hello@1.1.0", "--selector", "role=pinned")
	downloads := filepath.Join(dirs["pinned"], "downloads")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Millisecond) {
		if ents, _ := os.ReadDir(downloads); len(ents) > 0 {
			if fi, err := ents[0].Info(); err == nil && fi.Size() > 256<<10 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never started downloading:\n%s", agents["pinned"].out.String())
		}
	}
	agents["pinned"].kill()
	if got := current("pinned"); got != "1.0.0" {
		t.Fatalf("after kill -9 mid-install the node runs %q", got)
	}
	if ents, _ := os.ReadDir(downloads); len(ents) != 1 {
		t.Fatalf("want the partial download kept for resuming, got %v", ents)
	}
	startProc(t, "agent", "--server", f.addr, "--data", dirs["pinned"], "--trust", pub)
	f.waitEvent(since, "app.installed", "pinned")
	if got := current("pinned"); got != "1.1.0" {
		t.Fatalf("after the restart the node runs %q", got)
	}
	evs, _ := f.admin.Events(context.Background(), since, 10000)
	for _, e := range evs {
		if e.Type == "app.failed" {
			t.Errorf("an install that only had to resume reported a failure: %+v", e)
		}
	}
	agents["follow"].stop(t)
}

// throttle is a TCP proxy on loopback to target that passes bytes towards the client at about
// rate bytes per second; it returns the proxy's URL.
func throttle(t *testing.T, target string, rate int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return "https://" + l.Addr().String()
}

// demoVersions are the releases of the demo app that ferry dev pushes.
var demoVersions = []string{"1.0.0", "1.1.0", "1.2.0"}

// TestDevDemo runs the README's first command, ferry dev, and walks its suggested path: the
// demo fleet comes up, its signed demo release deploys to the mirrors, and Ctrl-C stops it.
func TestDevDemo(t *testing.T) {
	listen, data := freeAddr(t), t.TempDir()
	dev := startProc(t, "dev", "--agents", "6", "--sites", "3", "--listen", listen, "--data", data)
	f := &fleet{t: t, data: data, listen: listen, addr: "https://" + listen, server: dev}
	// The banner comes once the demo releases are pushed; the agents start after it.
	dev.out.waitFor(t, "Ferry dev fleet: 6 agents over 3 sites", 60*time.Second)
	var err error
	if f.admin, err = f.client(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	enrolled := map[string]bool{}
	if _, err := f.admin.WaitEvent(ctx, 0, func(e api.Event) bool {
		if e.Type == api.EventNodeEnrolled {
			enrolled[e.Subject] = true
		}
		return len(enrolled) == 6
	}); err != nil {
		t.Fatalf("the demo fleet did not come up (%d agents enrolled): %v\n%s", len(enrolled), err, dev.out.String())
	}
	if out := f.mustFerry("release", "list"); strings.Count(out, "hello") != len(demoVersions) {
		t.Fatalf("the demo releases:\n%s", out)
	}
	// The banner's walk: the demo app deploys, verified, and answers on the port its agent gave
	// it; 1.1.0 fails its health check and is rolled back; 1.2.0 goes in.
	if out := f.mustFerry("deploy", "hello@1.0.0", "--selector", "role=mirror", "--wait"); !strings.Contains(out, "assigned to 2 node(s)") || !strings.Contains(out, "(2/2)") {
		t.Fatalf("deploy: %s", out)
	}
	var nodes []api.Node
	json.Unmarshal([]byte(f.mustFerry("node", "list", "--selector", "role=mirror", "-o", "json")), &nodes)
	if len(nodes) != 2 {
		t.Fatalf("mirrors: %+v", nodes)
	}
	for _, n := range nodes {
		if len(n.Apps) != 1 || n.Apps[0].State != api.AppStateRunning || n.Apps[0].Ports["http"] == 0 {
			t.Fatalf("%s after the deploy: %+v", n.Name, n.Apps)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", n.Apps[0].Ports["http"]))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "hello 1.0.0 from") {
			t.Fatalf("%s's hello answers %q", n.Name, body)
		}
	}
	out, err := f.ferry("deploy", "hello@1.1.0", "--selector", "role=mirror", "--wait")
	if err == nil || !strings.Contains(out, "unhealthy on purpose") || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "gave up on hello@1.1.0") {
		t.Fatalf("deploy of the broken release: %v\n%s", err, out)
	}
	var st struct {
		Groups []struct {
			Version, State string
			Nodes          int
		}
	}
	json.Unmarshal([]byte(f.mustFerry("app", "status", "hello", "--selector", "role=mirror", "-o", "json")), &st)
	if len(st.Groups) != 1 || st.Groups[0].Version != "1.0.0" || st.Groups[0].State != api.AppStateRolledBack || st.Groups[0].Nodes != 2 {
		t.Fatalf("app status after the rollback: %+v", st)
	}
	if out := f.mustFerry("deploy", "hello@1.2.0", "--selector", "role=mirror", "--wait"); !strings.Contains(out, "(2/2)") {
		t.Fatalf("deploy 1.2.0: %s", out)
	}
	json.Unmarshal([]byte(f.mustFerry("node", "list", "--selector", "role=mirror", "-o", "json")), &nodes)
	// The walk's ferry logs: the process's output, through the server.
	if out := f.mustFerry("logs", nodes[0].Name, "hello", "--tail", "5"); !strings.Contains(out, "hello 1.2.0 listening on") {
		t.Fatalf("ferry logs %s hello: %q", nodes[0].Name, out)
	}
	var pids []int
	for _, n := range nodes {
		for _, p := range n.Apps[0].Processes {
			pids = append(pids, p.PID)
		}
	}
	dev.stop(t)
	// The demo's services go with it.
	for _, pid := range pids {
		if pid == 0 || syscall.Kill(pid, 0) == nil {
			t.Errorf("demo process %d still runs after ferry dev stopped", pid)
		}
	}
}
