package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// secondReplica starts another replica of a's cluster (args as a's) with a's admin token, as the
// README says to.
func secondReplica(t *testing.T, a *fleet, args []string) *fleet {
	t.Helper()
	b := &fleet{t: t, data: t.TempDir(), listen: freeAddr(t), args: args}
	b.addr = "https://" + b.listen
	if err := os.WriteFile(filepath.Join(b.data, "admin.token"), []byte(adminToken(a)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.startServer()
	return b
}

// agentOnB enrolls agent n1 in a new site ams, allowed unsigned releases from unstable, with
// the addresses of B then A: it streams to B while B is up.
func agentOnB(t *testing.T, a, b *fleet) *proc {
	t.Helper()
	a.mustFerry("site", "add", "ams", "--tier", "1")
	a.mustFerry("channel", "set", "unstable", "--allow-unsigned=true")
	tok := strings.TrimSpace(a.mustFerry("token", "create", "--site", "ams", "--uses", "1"))
	agent := startProc(t, "agent", "--server", b.addr+","+a.addr, "--token", tok, "--data", t.TempDir(), "--name", "n1", "--allow-unsigned")
	a.waitEvent(0, api.EventNodeEnrolled, "n1")
	return agent
}

// ferry logs asked of the replica that does not hold the node's stream: the request reaches the
// agent through the other one, and the agent's upload comes back to the one asked.
func TestLogsAcrossReplicas(t *testing.T) {
	root := t.TempDir()
	args := []string{"--db", pg.DB(t), "--cluster-key", filepath.Join(root, "cluster.key"), "--blobs", filepath.Join(root, "blobs")}
	a := newFleet(t, args...)
	a.server.out.waitFor(t, "leading", 10*time.Second)
	b := secondReplica(t, a, args)

	// The agent streams to B; the operator asks A.
	agent := agentOnB(t, a, b)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte(`app: hello
version: 1.0.0
class: minor
processes:
  - name: web
    command: [sh, -c, "echo hello from the node; exec sleep 100000"]
update: {min_healthy_time: 0s}
`), 0o644)
	bundle := filepath.Join(t.TempDir(), "hello.tar.gz")
	a.mustFerry("release", "build", src, "-o", bundle)
	a.mustFerry("release", "push", bundle)
	out, err := a.ferry("deploy", "hello@1.0.0", "--selector", "site=ams", "--wait", "--timeout", "60s")
	if err != nil {
		t.Fatalf("deploy: %s %v\nagent log:\n%s", out, err, agent.out.String())
	}
	// --wait shows the node's state as it changes (reports may fold quick steps into one).
	if !regexp.MustCompile(`n1: hello@1\.0\.0 (downloading|installing|starting|verifying)\n`).MatchString(out) {
		t.Fatalf("deploy --wait showed no step:\n%s", out)
	}
	n, err := a.admin.Node(context.Background(), "n1")
	if err != nil || len(n.Apps) != 1 || len(n.Apps[0].Processes) != 1 {
		t.Fatalf("n1 after the deploy: %+v %v", n, err)
	}
	// The process outlives the agent, as it should: the test ends it.
	t.Cleanup(func() { syscall.Kill(-n.Apps[0].Processes[0].PID, syscall.SIGKILL) })
	if strings.Contains(agent.out.String(), "trying the next") {
		t.Fatalf("the agent left replica B:\n%s", agent.out.String())
	}

	out, err = a.ferry("logs", "n1", "hello")
	if err != nil || out != "hello from the node\n" {
		t.Fatalf("ferry logs through A: %q %v\nagent log:\n%s", out, err, agent.out.String())
	}

	// Following through A ends on Ctrl-C, with status 0.
	follow := exec.Command(ferryBin, "logs", "n1", "hello", "--follow")
	follow.Env = a.env()
	buf := &syncBuf{}
	follow.Stdout, follow.Stderr = buf, buf
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("agent:\n%s\nA:\n%s\nB:\n%s", agent.out.String(), a.server.out.String(), b.server.out.String())
		}
	}()
	buf.waitFor(t, "hello from the node", 20*time.Second)
	follow.Process.Signal(os.Interrupt)
	if err := follow.Wait(); err != nil {
		t.Fatalf("ferry logs --follow after Ctrl-C: %v\n%s", err, buf.String())
	}
	// Each request is in the event log, with who asked.
	evs, err := a.admin.Events(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	for _, e := range evs {
		if e.Type == api.EventNodeLogsRequested && e.Subject == "n1" && strings.HasPrefix(e.Actor, "token:") {
			asked++
		}
	}
	if asked != 2 {
		t.Fatalf("%d node.logs_requested events, want 2", asked)
	}
}
