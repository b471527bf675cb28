package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// With the server stopped, a node's services go on: the running one keeps answering with the
// same pid, a process killed with SIGKILL is started again by the agent, and nothing is rolled
// back. When the server is back (same data directory, same address) the agent reconnects and
// its report catches up — the new pid and the restart counted, in the server's view of the
// node — and a desired state set after the return is carried out.
func TestServerAway(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	n, na, sock, ready := r.serving(dir, clk, agent.Config{})
	port, pid := na.Ports["http"], na.Processes[0].PID

	r.stop()
	// The stream breaks and the agent waits on its clock to reconnect, which this test moves
	// only once the server is back.
	wctx, wcancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer wcancel()
	if err := clk.WaitDue(wctx, 200*time.Millisecond); err != nil {
		t.Fatalf("the agent is not waiting to reconnect (%d timers): %v", clk.Pending(), err)
	}
	if got := get(t, port); got != "200 1.0.0" {
		t.Fatalf("with the server away the service answers %q", got)
	}
	if na, _ := n.hello(); na.State != api.AppStateRunning || na.Processes[0].PID != pid {
		t.Fatalf("with the server away: %+v, want pid %d running", na, pid)
	}

	syscall.Kill(pid, syscall.SIGKILL)
	na = n.waitReport(t, nil, func(a api.NodeApp) bool {
		return len(a.Processes) == 1 && a.Processes[0].PID != pid && a.Processes[0].PID != 0 && a.Processes[0].State == "running"
	})
	restarted := na.Processes[0].PID
	if na.State != api.AppStateRunning || na.Version != "1.0.0" || na.Pending != "" || na.Error != "" || na.Processes[0].Restarts != 1 {
		t.Fatalf("after the kill with the server away: %+v", na)
	}
	awaitReady(t, ready, "1.0.0")
	if got := get(t, port); got != "200 1.0.0" {
		t.Fatalf("after the restart the service answers %q", got)
	}
	if b, _ := os.Readlink(filepath.Join(dir, "apps/hello/current")); b != "releases/1.0.0" {
		t.Fatalf("current -> %s", b)
	}

	r.serve(strings.TrimPrefix(r.addr, "https://"))
	clk.Advance(300 * time.Millisecond) // the reconnection's wait (≤ 200 ms)
	seen := r.waitApp("n1", func(a api.NodeApp) bool {
		return a.State == api.AppStateRunning && len(a.Processes) == 1 && a.Processes[0].PID == restarted
	})
	if seen.Version != "1.0.0" || seen.Processes[0].Restarts != 1 || seen.Processes[0].LastExit == nil || seen.Processes[0].LastExit.Signal != "killed" {
		t.Fatalf("the server's view after the return: %+v", seen)
	}
	evs, err := r.admin.Events(r.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		var c api.AppStateChanged
		if e.Type == api.EventAppFailed || (e.Type == api.EventAppState && e.Decode(&c) == nil &&
			(c.To == api.AppStateRolledBack || c.To == api.AppStateFailed || c.To == api.AppStateCrashloop)) {
			t.Errorf("nothing failed or rolled back, but: %s %s %s", e.Type, e.Subject, e.Data)
		}
	}

	r.pushManifest("1.1.0", webService("1.1.0", false, sock), nil)
	r.deploy("hello@1.1.0", "site=ams")
	awaitReady(t, ready, "1.1.0")
	n.waitReport(t, clk, inState(api.AppStateRunning, "1.1.0"))
	r.waitApp("n1", inState(api.AppStateRunning, "1.1.0"))
	if got := get(t, port); got != "200 1.1.0" {
		t.Fatalf("after the new deploy the service answers %q", got)
	}
}

// serving starts agent n1 on dir with cfg and clk and has it run webService 1.0.0 until it is
// verified: the node, its report, and the ready socket's path and news.
func (r *rig) serving(dir string, clk *clock.Fake, cfg agent.Config) (*node, api.NodeApp, string, <-chan string) {
	t := r.t
	t.Helper()
	killServices(t, dir)
	cfg.Clock = clk
	n := r.start("n1", dir, cfg)
	sock, ready := readySocket(t)
	r.pushManifest("1.0.0", webService("1.0.0", false, sock), nil)
	r.deploy("hello@1.0.0", "site=ams")
	awaitReady(t, ready, "1.0.0")
	return n, n.waitReport(t, clk, inState(api.AppStateRunning, "1.0.0")), sock, ready
}
