package cli

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

// rolloutFleet is a fleet of four real agents, two at ams and two at fra, running hello 1.0.
func rolloutFleet(t *testing.T) *fleet {
	f := newFleet(t)
	for _, n := range []struct{ name, site string }{{"a1", "ams"}, {"a2", "ams"}, {"f1", "fra"}, {"f2", "fra"}} {
		f.agent(n.name, n.site, nil)
	}
	f.push("hello", "1.0.0")
	f.mustFerry("deploy", "hello@1.0.0", "--all", "--wait")
	return f
}

func (f *fleet) policyFile(text string) string {
	f.t.Helper()
	file := filepath.Join(f.t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return file
}

func (f *fleet) startRollout(args ...string) api.Rollout {
	f.t.Helper()
	var r api.Rollout
	out := f.mustFerry(append(append([]string{"rollout", "start"}, args...), "-o", "json")...)
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ID == 0 {
		f.t.Fatalf("rollout start printed %q: %v", out, err)
	}
	return r
}

// waitRollout waits for an event of the rollout that match accepts.
func (f *fleet) waitRollout(id int64, match func(api.Event) bool) api.Event {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	defer cancel()
	ev, err := f.admin.WaitEvent(ctx, 0, func(e api.Event) bool { return e.Subject == api.RolloutSubject(id) && match(e) })
	if err != nil {
		f.t.Fatalf("rollout %d: %v", id, err)
	}
	return ev
}

func (f *fleet) assigned(node, app string) string {
	f.t.Helper()
	n, err := f.admin.Node(f.ctx, node)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, a := range n.Assigned {
		if a.App == app {
			return a.Version
		}
	}
	return ""
}

func (f *fleet) running(node, app string) string {
	f.t.Helper()
	n, err := f.admin.Node(f.ctx, node)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, a := range n.Apps {
		if a.App == app {
			return a.Version
		}
	}
	return ""
}

// A release that crashes at start halts in the pilot wave: the pilot's nodes go back to the
// release before and serve it, and no node outside the pilot is touched.
func TestRolloutCrashHaltsInPilot(t *testing.T) {
	f := rolloutFleet(t)
	f.pushWith("hello", "2.0.0", "processes:\n  - name: web\n    command: [sh, -c, \"echo boom; exit 3\"]\n"+
		"update: {min_healthy_time: 1s, healthy_deadline: 20s}\n")
	policy := f.policyFile(`name: careful
on_failure: rollback
waves:
  - {name: pilot, selector: "site=ams", max_parallel: 1, failure_threshold: 1}
  - {name: rest, max_parallel: 2}
`)
	plan := f.mustFerry("rollout", "plan", "hello@2.0.0", "--policy", policy)
	for _, want := range []string{"hello@2.0.0 by policy careful", "pilot", "ams:2", "rest", "fra:2"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("plan lacks %q:\n%s", want, plan)
		}
	}
	if evs := f.events(); evs[len(evs)-1].Type == api.EventRolloutStarted {
		t.Fatal("plan started a rollout")
	}
	r := f.startRollout("hello@2.0.0", "--policy", policy)
	if r.Release != "hello@2.0.0" || r.Policy != "careful" || len(r.Waves) != 2 || r.Waves[0].Nodes != 2 || r.Waves[1].Nodes != 2 {
		t.Fatalf("started %+v", r)
	}
	out, errOut, code := f.ferry("rollout", "status", strconv.FormatInt(r.ID, 10), "--watch")
	if code != 1 || !strings.Contains(errOut, "rolled back: wave pilot: 1 of 2 nodes failed") {
		t.Fatalf("status --watch: exit %d\n%s%s", code, out, errOut)
	}
	for _, n := range []string{"a1", "a2", "f1", "f2"} {
		if got := f.assigned(n, "hello"); got != "1.0.0" {
			t.Errorf("%s is assigned hello %s after the rollback", n, got)
		}
		if got := f.running(n, "hello"); got != "1.0.0" {
			t.Errorf("%s runs hello %s after the rollback", n, got)
		}
	}
	for _, ev := range f.events() {
		var d api.RolloutNodeChanged
		if ev.Type == api.EventRolloutNode && ev.Decode(&d) == nil && strings.HasPrefix(d.Node, "f") {
			t.Errorf("a node outside the pilot was touched: %+v", d)
		}
		if ev.Type == api.EventAppState && strings.HasPrefix(ev.Subject, "f") {
			var s api.AppStateChanged
			if ev.Decode(&s) == nil && s.Version == "2.0.0" {
				t.Errorf("%s saw hello 2.0: %+v", ev.Subject, s)
			}
		}
	}
	status := f.mustFerry("rollout", "status", strconv.FormatInt(r.ID, 10))
	if !strings.Contains(status, "rolled_back") || !strings.Contains(status, "pilot") {
		t.Errorf("status:\n%s", status)
	}
	list := f.mustFerry("rollout", "list")
	if !strings.Contains(list, "hello@2.0.0") || !strings.Contains(list, "rolled_back") {
		t.Errorf("list:\n%s", list)
	}
}

// A healthy release passes every wave behind an approval; a second rollout of the same nodes is
// refused while the first runs; an aborted rollout goes on when retried.
func TestRolloutApprovalConflictAbortRetry(t *testing.T) {
	f := rolloutFleet(t)
	f.push("hello", "3.0.0")
	policy := f.policyFile(`name: gated
waves:
  - {name: pilot, selector: "site=ams", approval: {count: 1}, healthy_deadline: 30s}
  - {name: rest, max_parallel: 2, healthy_deadline: 30s}
`)
	r := f.startRollout("hello@3.0.0", "--policy", policy)
	id := strconv.FormatInt(r.ID, 10)
	f.waitRollout(r.ID, func(e api.Event) bool {
		var d api.RolloutWaveChanged
		return e.Type == api.EventRolloutWave && e.Decode(&d) == nil && d.State == "awaiting_approval"
	})
	if got := f.assigned("a1", "hello"); got != "1.0.0" {
		t.Fatalf("a1 assigned %s before the approval", got)
	}
	// The same nodes cannot be in two rollouts of the app at once.
	f.push("hello", "3.1.0")
	_, errOut, code := f.ferry("rollout", "start", "hello@3.1.0", "--selector", "site=fra")
	if code != 1 || !strings.Contains(errOut, "rollout "+id+" (hello@3.0.0, running) holds f1, f2") {
		t.Fatalf("a conflicting start: exit %d %s", code, errOut)
	}
	// Nor can an operator's deploy or undeploy change them under the rollout.
	for _, args := range [][]string{{"deploy", "hello@3.1.0", "--selector", "site=ams"}, {"undeploy", "hello", "--selector", "site=fra"}} {
		if _, errOut, code := f.ferry(args...); code != 1 || !strings.Contains(errOut, "rollout "+id+" (hello@3.0.0, running) holds") {
			t.Fatalf("ferry %s during the rollout: exit %d %s", strings.Join(args, " "), code, errOut)
		}
	}
	// Abort, then retry: it goes on where it was.
	f.mustFerry("rollout", "abort", id, "--reason", "wrong day")
	if _, errOut, code := f.ferry("rollout", "approve", id); code != 1 || !strings.Contains(errOut, "nothing to approve") {
		t.Fatalf("approve of an aborted rollout: exit %d %s", code, errOut)
	}
	f.mustFerry("rollout", "retry", id)
	if out := f.mustFerry("rollout", "approve", id); !strings.Contains(out, "running") {
		t.Fatalf("approve printed %q", out)
	}
	if _, errOut, code := f.ferry("rollout", "approve", id); code != 1 {
		t.Fatalf("a second approval by the same token: exit %d %s", code, errOut)
	}
	out, errOut, code := f.ferry("rollout", "status", id, "--watch")
	if code != 0 || !strings.Contains(out, "rollout "+id+": completed") {
		n, _ := f.admin.Node(f.ctx, "a1")
		t.Fatalf("status --watch: exit %d\n%s%s\na1: %+v %+v", code, out, errOut, n.Apps, n.Assigned)
	}
	for _, n := range []string{"a1", "a2", "f1", "f2"} {
		if got := f.running(n, "hello"); got != "3.0.0" {
			t.Errorf("%s runs hello %s", n, got)
		}
	}
	var got api.Rollout
	if err := json.Unmarshal([]byte(f.mustFerry("rollout", "status", id, "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if got.State != "completed" || got.Waves[0].Done != 2 || got.Waves[1].Done != 2 || got.Waves[0].Approved[0] == "" {
		t.Fatalf("rollout %+v", got)
	}
	// A plan of a release every node runs has nothing to change.
	if out := f.mustFerry("rollout", "plan", "hello@3.0.0", "--policy", policy); !strings.Contains(out, "nothing to change") {
		t.Errorf("plan of the running release:\n%s", out)
	}
	// Every event of the rollout says who caused it.
	for _, ev := range f.events() {
		if strings.HasPrefix(ev.Type, "rollout.") && ev.Actor == "" {
			t.Errorf("event %s has no actor", ev.Type)
		}
	}
}

func TestRolloutRefusals(t *testing.T) {
	f := newFleet(t)
	f.agent("a1", "ams", nil)
	f.push("hello", "1.0.0")
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"rollout", "start", "hello"}, "want APP@VERSION", 2},
		{[]string{"rollout", "start", "hello@9.9.9"}, "release hello@9.9.9 not found", 1},
		{[]string{"rollout", "start", "hello@1.0.0"}, "no node is assigned hello", 1},
		{[]string{"rollout", "start", "hello@1.0.0", "--selector", "site=nowhere"}, "matches no node", 1},
		{[]string{"rollout", "start", "hello@1.0.0", "--selector", "site=ams", "--policy", "nosuch"}, "nosuch", 1},
		{[]string{"rollout", "status", "x"}, "not a rollout id", 2},
		{[]string{"rollout", "status", "77"}, "rollout 77 not found", 1},
		{[]string{"rollout", "ack", "1"}, "give --site", 2},
		{[]string{"rollout", "report", "1", "--site", "ams", "fine"}, "give --good or --bad", 2},
		{[]string{"rollout", "rehearse", "hello"}, "want APP@VERSION", 2},
		{[]string{"rollout", "rehearse", "hello@1.0.0", "--fail-rate", "1.5"}, `--fail-rate "1.5": want a chance from 0 to 1`, 2},
		{[]string{"rollout", "rehearse", "hello@1.0.0", "--offline-rate", "x"}, `--offline-rate "x": want a chance`, 2},
		{[]string{"rollout", "rehearse", "hello@1.0.0", "--fail-rate", "NaN"}, "want a chance", 2},
		{[]string{"rollout", "rehearse", "hello@1.0.0", "--seed", "x"}, "--seed", 2},
		{[]string{"rollout", "rehearse", "hello@1.0.0", "--install-time", "-1s"}, "--install-time -1s is negative", 2},
		{[]string{"rollout", "rehearse", "hello@9.9.9", "--selector", "site=ams"}, "release hello@9.9.9 not found", 1},
		{[]string{"rollout", "rehearse", "hello@1.0.0"}, "no node is assigned hello", 1},
		{[]string{"rollout", "rehearse", "hello@1.0.0", "--selector", "site=ams", "--install-time", "25h"}, "install time 25h0m0s is out of bounds", 1},
	} {
		_, errOut, code := f.ferry(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("ferry %s: exit %d %q, want %d and %q in one line", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}
	// Overrides of a built-in policy: checked like the file, and they show in the plan.
	var plan api.RolloutPlan
	out := f.mustFerry("rollout", "plan", "hello@1.0.0", "--selector", "site=ams", "--policy", "minor", "--set", "*.soak=3d", "-o", "json")
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan.Waves) == 0 || time.Duration(plan.Waves[0].Estimate) < 72*time.Hour {
		t.Fatalf("plan with *.soak=3d: %s %v", out, err)
	}
	if _, errOut, code := f.ferry("rollout", "plan", "hello@1.0.0", "--selector", "site=ams", "--set", "half.sook=1d"); code != 1 || !strings.Contains(errOut, "sook") {
		t.Errorf("a bad override: exit %d %q", code, errOut)
	}
	bad := f.policyFile("name: x\nwaves:\n  - {name: pilot, max_paralel: 1}\n")
	_, errOut, code := f.ferry("rollout", "start", "hello@1.0.0", "--selector", "site=ams", "--policy", bad)
	if code != 1 || !strings.Contains(errOut, "max_paralel") || !strings.Contains(errOut, ":3") {
		t.Errorf("a policy with an unknown field: exit %d %q", code, errOut)
	}
	if evs := f.events(); len(evs) > 0 && strings.HasPrefix(evs[len(evs)-1].Type, "rollout.") {
		t.Errorf("a refused start wrote %s", evs[len(evs)-1].Type)
	}
}

// A wave's healthy_deadline goes with its assignments and overrides the manifest's: a release
// whose check never passes is rolled back by its agent at the wave's deadline, not the
// manifest's five minutes.
func TestRolloutWaveDeadlineReachesAgents(t *testing.T) {
	f := rolloutFleet(t)
	f.pushWith("hello", "2.0.0", "processes:\n  - name: web\n    command: [sleep, \"600\"]\n"+
		"checks:\n  - {name: port, tcp: \"127.0.0.1:1\", interval: 1s}\n"+
		"update: {min_healthy_time: 1s, healthy_deadline: 5m}\n")
	policy := f.policyFile(`name: quick
waves:
  - {name: pilot, selector: "site=ams", max_parallel: 2, healthy_deadline: 2s, min_healthy_time: 1s}
  - {name: rest}
`)
	r := f.startRollout("hello@2.0.0", "--policy", policy)
	n, err := f.admin.Node(f.ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := f.ferry("rollout", "status", strconv.FormatInt(r.ID, 10), "--watch")
	if code != 1 || !strings.Contains(errOut, "rolled back") {
		t.Fatalf("status --watch: exit %d\n%s%s", code, out, errOut)
	}
	var failed api.RolloutNodeChanged
	for _, ev := range f.events() {
		var d api.RolloutNodeChanged
		if ev.Type == api.EventRolloutNode && ev.Decode(&d) == nil && d.State == "failed" {
			failed = d
		}
	}
	if !strings.Contains(failed.Reason, "healthy_deadline 2s") {
		t.Fatalf("the failure %+v does not name the wave's deadline (node before: %+v)", failed, n.Assigned)
	}
}
