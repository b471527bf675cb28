package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// TestRolloutSurvivesKill9: a rollout with real server and agent processes; the server is
// killed with -9 while the pilot soaks, and a new server on the same data resumes it: the soak
// ends when it was due (not counted again from the restart), no node is moved twice, and the
// rollout completes.
func TestRolloutSurvivesKill9(t *testing.T) {
	f := newFleet(t)
	keyDir := t.TempDir()
	t.Setenv("FERRY_KEY_DIR", keyDir)
	f.mustFerry("key", "gen", "--no-password")
	f.mustFerry("key", "trust", filepath.Join(keyDir, "ferry.pub"))
	f.mustFerry("site", "add", "ams", "--tier", "1")
	f.mustFerry("site", "add", "fra", "--tier", "2")
	for _, n := range []struct{ name, site string }{{"a1", "ams"}, {"a2", "ams"}, {"f1", "fra"}, {"f2", "fra"}} {
		tok := strings.TrimSpace(f.mustFerry("token", "create", "--site", n.site))
		startProc(t, "agent", "--server", f.addr, "--token", tok, "--data", t.TempDir(), "--name", n.name)
		f.waitEvent(0, "node.enrolled", n.name)
	}
	src := t.TempDir()
	push := func(version string) {
		t.Helper()
		os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: "+version+"\nclass: minor\n"), 0o644)
		out := filepath.Join(t.TempDir(), "hello-"+version+".tar.gz")
		f.mustFerry("release", "build", src, "-o", out)
		f.mustFerry("release", "sign", out)
		f.mustFerry("release", "push", out)
	}
	push("1.0.0")
	push("2.0.0")
	f.mustFerry("deploy", "hello@1.0.0", "--all", "--wait", "--timeout", "60s")

	const soak = 4 * time.Second
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policy, []byte("name: soaked\nwaves:\n  - {name: pilot, selector: \"site=ams\", soak: 4s}\n  - {name: rest, max_parallel: 2}\n"), 0o644)
	var r api.Rollout
	if err := json.Unmarshal([]byte(f.mustFerry("rollout", "start", "hello@2.0.0", "--policy", policy, "-o", "json")), &r); err != nil {
		t.Fatal(err)
	}
	subject := api.RolloutSubject(r.ID)
	wave := func(since int64, name, state string) api.Event {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		ev, err := f.admin.WaitEvent(ctx, since, func(e api.Event) bool {
			var d api.RolloutWaveChanged
			return e.Subject == subject && e.Type == api.EventRolloutWave && e.Decode(&d) == nil && d.Wave == name && d.State == state
		})
		if err != nil {
			t.Fatalf("wave %s never %s: %v\n%s", name, state, err, f.server.out.String())
		}
		return ev
	}
	healthy := wave(0, "pilot", "healthy")

	f.server.kill()
	f.startServer()
	rest := wave(healthy.ID, "rest", "started")
	if gap := rest.Time.Sub(healthy.Time); gap < soak || gap > soak+3*time.Second {
		t.Fatalf("the rest started %s after the pilot was healthy; the soak is %s", gap, soak)
	}
	if out, err := f.ferry("rollout", "status", strconv.FormatInt(r.ID, 10), "--watch"); err != nil || !strings.Contains(out, "completed") {
		t.Fatalf("status --watch: %s %v", out, err)
	}
	evs, err := f.admin.Events(t.Context(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	moved := map[string]int{}
	for _, e := range evs {
		var d api.ReleaseDeployed
		if e.Type == api.EventReleaseDeployed && e.Subject == "hello@2.0.0" && e.Decode(&d) == nil {
			for _, n := range d.Nodes {
				moved[n]++
			}
		}
	}
	for _, n := range []string{"a1", "a2", "f1", "f2"} {
		if moved[n] != 1 {
			t.Errorf("%s was moved to 2.0.0 %d times", n, moved[n])
		}
	}
}
