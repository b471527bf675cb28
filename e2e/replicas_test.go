package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/internal/pgtest"
)

// pg gives tests throw-away PostgreSQL databases; TestMain stops its cluster.
var pg = pgtest.New()

// Two replicas over one PostgreSQL: a release deployed through A reaches an agent on B; kill -9
// of the leader hands the sweep to the other within the grace period and marks no node down;
// kill -9 of the agent's replica moves the agent to the other, which keeps the node up (or
// brings it back within a grace period) and still reaches it with a deploy.
func TestReplicasOverPostgres(t *testing.T) {
	const grace = 2 * time.Second
	root := t.TempDir()
	args := []string{"--db", pg.DB(t), "--cluster-key", filepath.Join(root, "cluster.key"), "--blobs", filepath.Join(root, "blobs"),
		"--heartbeat-interval", "500ms", "--heartbeat-grace", grace.String()}
	a := newFleet(t, args...)
	a.server.out.waitFor(t, "leading", 10*time.Second)
	b := secondReplica(t, a, args)
	caA, _ := os.ReadFile(a.caFile())
	caB, _ := os.ReadFile(b.caFile())
	if len(caA) == 0 || !bytes.Equal(caA, caB) {
		t.Fatal("the replicas serve different CAs")
	}
	if strings.Contains(b.server.out.String(), "leading") {
		t.Fatalf("both replicas lead:\n%s", b.server.out.String())
	}

	agent := agentOnB(t, a, b)

	src := t.TempDir()
	push := func(version string) {
		t.Helper()
		os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: "+version+"\nclass: minor\n"), 0o644)
		out := filepath.Join(t.TempDir(), "hello.tar.gz")
		a.mustFerry("release", "build", src, "-o", out)
		a.mustFerry("release", "push", out)
	}
	deploy := func(f *fleet, version string) {
		t.Helper()
		out, err := f.ferry("deploy", "hello@"+version, "--selector", "site=ams", "--wait", "--timeout", "60s")
		if err != nil || !strings.Contains(out, "n1: installed hello@"+version) {
			t.Fatalf("deploy through %s: %s %v\nagent log:\n%s", f.listen, out, err, agent.out.String())
		}
	}
	push("1.0.0")
	deploy(a, "1.0.0")
	if strings.Contains(agent.out.String(), "trying the next") {
		t.Fatalf("the agent left replica B:\n%s", agent.out.String())
	}

	// Kill -9 the leader: B leads within the grace period, and n1, on B, is never marked down.
	since := b.lastEvent()
	a.server.kill()
	b.server.out.waitFor(t, "leading", grace)
	noDown := func(f *fleet, since int64, within time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		e, err := f.admin.WaitEvent(ctx, since, func(e api.Event) bool { return e.Type == api.EventNodeDown })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a node marked down after the leader died: %+v %v\n%s", e, err, f.server.out.String())
		}
	}
	noDown(b, since, 3*grace)

	// Kill -9 the replica the agent is on, which leads now: A, started again, takes the agent
	// and the lead, and a deploy through it reaches n1.
	a.startServer()
	since = a.lastEvent()
	b.server.kill()
	agent.out.waitFor(t, "trying the next", 10*time.Second)
	a.server.out.waitFor(t, "leading", 10*time.Second)
	push("1.1.0")
	deploy(a, "1.1.0")
	evs, err := a.admin.Events(context.Background(), since, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var downAt time.Time
	for _, e := range evs {
		switch {
		case e.Type == api.EventNodeDown && e.Subject == "n1":
			downAt = e.Time
		case e.Type == api.EventNodeUp && e.Subject == "n1" && !downAt.IsZero():
			if back := e.Time.Sub(downAt); back > grace {
				t.Fatalf("n1 came back %s after it was marked down, more than a grace period", back)
			}
			downAt = time.Time{}
		}
	}
	if n, err := a.admin.Node(context.Background(), "n1"); err != nil || n.Status != api.StatusUp || !downAt.IsZero() {
		t.Fatalf("n1 after its replica died: %+v %v (down since %s)", n, err, downAt)
	}
}
