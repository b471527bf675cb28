package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// app status counts the nodes by the app's version and state, on the nodes a selector matches.
func TestAppStatus(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", map[string]string{"role": "mirror"})
	f.agent("ams-02", "ams", map[string]string{"role": "depot"})
	f.push("hello", "1.0.0")
	f.mustFerry("deploy", "hello@1.0.0", "--all", "--wait")
	status := func(args ...string) AppStatus {
		t.Helper()
		var st AppStatus
		out := f.mustFerry(append([]string{"app", "status", "hello", "-o", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return st
	}
	if st := status(); st.Nodes != 2 || len(st.Groups) != 1 || st.Groups[0].Version != "1.0.0" || st.Groups[0].Nodes != 2 || len(st.Unhappy) != 0 {
		t.Errorf("app status: %+v", st)
	}
	if st := status("--selector", "role=mirror"); st.Nodes != 1 {
		t.Errorf("app status --selector role=mirror: %+v", st)
	}
	if out := f.mustFerry("app", "status", "hello"); !strings.Contains(out, "VERSION") || !strings.Contains(out, "all 2 nodes run their assigned release") {
		t.Errorf("app status table:\n%s", out)
	}
	if out := f.mustFerry("app", "status", "other"); out != "no node runs or is assigned other\n" {
		t.Errorf("app status of an app nowhere: %q", out)
	}
	for _, args := range [][]string{{"app", "status", "Bad_Name"}, {"app", "status", "hello", "--selector", "=="}, {"app", "status"}} {
		if _, errOut, code := f.ferry(args...); code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("ferry %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}

// A node is unhappy when it is down, runs another release than it is assigned, or its app is
// in any state but running or stopped.
func TestUnhappyNodes(t *testing.T) {
	node := func(status string, apps []api.NodeApp, assigned string) api.Node {
		n := api.Node{Name: "n1", Site: "ams", Status: status, Apps: apps}
		if assigned != "" {
			n.Assigned = []api.Assignment{{App: "hello", Version: assigned}}
		}
		return n
	}
	for _, tc := range []struct {
		name    string
		n       api.Node
		state   string
		unhappy bool
	}{
		{"running", node(api.StatusUp, []api.NodeApp{{App: "hello", Version: "1", State: api.AppStateRunning}}, "1"), api.AppStateRunning, false},
		{"down", node(api.StatusDown, []api.NodeApp{{App: "hello", Version: "1", State: api.AppStateRunning}}, "1"), api.AppStateRunning, true},
		{"rolled back", node(api.StatusUp, []api.NodeApp{{App: "hello", Version: "1", Pending: "2", State: api.AppStateRolledBack, Error: "verify: exited"}}, "2"), api.AppStateRolledBack, true},
		{"crashloop", node(api.StatusUp, []api.NodeApp{{App: "hello", Version: "1", State: api.AppStateCrashloop}}, "1"), api.AppStateCrashloop, true},
		{"stopped on purpose", node(api.StatusUp, []api.NodeApp{{App: "hello", Version: "1", State: api.AppStateStopped}}, "1"), api.AppStateStopped, false},
		{"assigned, not reported", node(api.StatusUp, nil, "1"), "pending", true},
		{"installed by an agent that runs nothing", node(api.StatusUp, []api.NodeApp{{App: "hello", Version: "1"}}, "1"), "installed", false},
	} {
		ns, ok := nodeAppStatus(tc.n, "hello")
		if !ok || ns.State != tc.state || unhappy(ns) != tc.unhappy {
			t.Errorf("%s: %+v (found %v), unhappy %v; want state %s, unhappy %v", tc.name, ns, ok, unhappy(ns), tc.state, tc.unhappy)
		}
	}
	if _, ok := nodeAppStatus(node(api.StatusUp, []api.NodeApp{{App: "other", Version: "1"}}, ""), "hello"); ok {
		t.Error("a node without the app counted")
	}
}

// node show lists each app's processes and ports, and the log tail of a failure line by line,
// with nothing in it that could steer the terminal.
func TestNodeShowApps(t *testing.T) {
	code := 2
	started := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	n := api.Node{Apps: []api.NodeApp{{App: "hello", Version: "1.0.0", Pending: "1.1.0", State: api.AppStateRolledBack,
		Error: "verify: process web exited", LogTail: "listening\npanic: \x1b[2Jboom\n",
		Processes: []api.ProcessState{{Name: "web", State: "running", PID: 42, Started: &started, Restarts: 1,
			LastExit: &api.ProcessExit{Time: started, Code: &code}}},
		Ports: map[string]int{"http": 31000, "admin": 31001}}}}
	var rows []string
	for _, r := range appRows(n) {
		rows = append(rows, strings.Join(r, " | "))
	}
	want := []string{
		"app hello | 1.0.0 rolled_back (assigned 1.1.0): verify: process web exited",
		"  process web | running, pid 42, up since 2026-03-01T12:00:00Z, 1 restarts, last exited 2 at 2026-03-01T12:00:00Z",
		"  ports | admin=31001 http=31000",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	pinned := api.Node{Apps: []api.NodeApp{{App: "hello", Version: "1.1.0"}, {App: "other", Version: "2.0.0"}},
		Assigned: []api.Assignment{{App: "hello", Version: "1.1.0", Withdrawn: "crashes"}, {App: "other", Version: "2.0.0"}}}
	if got := appSummary(pinned); got != "hello@1.1.0(withdrawn) other@2.0.0" {
		t.Errorf("node list's apps of a node running a withdrawn release: %q", got)
	}
	var out strings.Builder
	e := &env{stdout: &out}
	e.printLogTails(n)
	if got := out.String(); got != "\nlog tail of hello (the failing process):\n  listening\n  panic: \\x1b[2Jboom\n" {
		t.Errorf("log tail: %q", got)
	}
}

// app stop|start|restart name the app and the nodes; nodes without the app are not theirs.
func TestAppControlRefusals(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", nil)
	for _, args := range [][]string{
		{"app", "restart", "hello"},
		{"app", "restart", "hello", "--all", "--selector", "site=ams"},
		{"app", "stop", "Bad_Name", "--all"},
		{"app", "start", "hello", "--all", "--max-parallel", "-1"},
		{"app", "start", "hello", "--all", "--timeout", "0s"},
	} {
		if _, errOut, code := f.ferry(args...); code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("ferry %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
	_, errOut, code := f.ferry("app", "restart", "hello", "--all")
	if code != 1 || errOut != "ferry: no node that matches \"site\" has hello assigned; nothing to restart\n" {
		t.Errorf("restart an app no node has: exit %d, %q", code, errOut)
	}
	for _, ev := range f.events() {
		if ev.Type == api.EventAppControl {
			t.Errorf("a refused action was logged: %+v", ev)
		}
	}
}
