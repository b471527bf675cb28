package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/output"
	"github.com/ferryhq/ferry/labels"
)

// A deploy whose selector matches no node fails with one line and assigns nothing.
func TestDeployMatchingNoNode(t *testing.T) {
	f := newFleet(t)
	f.push("hello", "1.0.0")
	_, errOut, code := f.ferry("deploy", "hello@1.0.0", "--all")
	if code != 1 || errOut != "ferry: no node has enrolled yet; nothing deployed\n" {
		t.Errorf("deploy --all to no node: exit %d, stderr %q", code, errOut)
	}
	f.agent("ams-01", "ams", map[string]string{"role": "mirror"})
	for _, args := range [][]string{
		{"deploy", "hello@1.0.0", "--selector", "role=nothing"},
		{"deploy", "hello@1.0.0", "--selector", "role=nothing", "--wait"},
		{"deploy", "hello@1.0.0", "--selector", "role=nothing", "--dry-run"},
	} {
		out, errOut, code := f.ferry(args...)
		if code != 1 || out != "" || errOut != "ferry: no node matches the selector \"role=nothing\"; nothing deployed (ferry node list shows the nodes and their labels)\n" {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, ev := range f.events() {
		if ev.Type == "release.deployed" {
			t.Errorf("a deploy to no node was logged: %+v", ev)
		}
	}
}

// deploy --dry-run lists the nodes a deploy would change (those that match and do not have the
// release assigned yet) and changes nothing.
func TestDeployDryRun(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", map[string]string{"role": "mirror"})
	f.agent("ams-02", "ams", map[string]string{"role": "depot"})
	f.push("hello", "1.0.0")
	dryRun := func(args ...string) deployPlan {
		t.Helper()
		var p deployPlan
		out := f.mustFerry(append([]string{"deploy", "hello@1.0.0", "--dry-run", "-o", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return p
	}
	before := len(f.events())
	if p := dryRun("--selector", "role=mirror"); !p.DryRun || p.Selector != "role=mirror" || strings.Join(p.Nodes, " ") != "ams-01" || len(p.Unchanged) != 0 || p.Matched != 1 {
		t.Errorf("dry run to role=mirror: %+v", p)
	}
	if evs := f.events(); len(evs) != before {
		t.Errorf("a dry run logged %+v", evs[before:])
	}
	n, err := f.admin.Node(f.ctx, "ams-01")
	if err != nil || len(n.Assigned) != 0 {
		t.Fatalf("a dry run assigned %+v (%v)", n.Assigned, err)
	}

	var res api.Deployed
	if out := f.mustFerry("deploy", "hello@1.0.0", "--selector", "role=mirror", "-o", "json"); json.Unmarshal([]byte(out), &res) != nil ||
		res.DryRun || strings.Join(res.Nodes, " ") != "ams-01" || res.Matched != 1 || res.EventID == 0 {
		t.Errorf("deploy -o json:\n%s", out)
	}
	if out := f.mustFerry("deploy", "hello@1.0.0", "--selector", "role=mirror"); !strings.HasPrefix(out, "hello@1.0.0 assigned to 0 node(s): all 1 matching node(s) have it assigned already\n") {
		t.Errorf("deploy again:\n%s", out)
	}
	if p := dryRun("--all"); strings.Join(p.Nodes, " ") != "ams-02" || strings.Join(p.Unchanged, " ") != "ams-01" || p.Matched != 2 {
		t.Errorf("dry run to all after a deploy to ams-01: %+v", p)
	}
	out := f.mustFerry("deploy", "hello@1.0.0", "--all", "--dry-run")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "dry run: hello@1.0.0 would be assigned to 1 node(s) (1 more match, with hello@1.0.0 assigned already); nothing changed" ||
		!strings.HasPrefix(lines[1], "NODE") || strings.Join(strings.Fields(lines[2]), " ") != "ams-02 ams up - -" {
		t.Errorf("dry run table:\n%s", out)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deploy", "hello@1.0.0", "--all", "--dry-run", "--wait"}, 2, "ferry: deploy: give --dry-run or --wait, not both\n"},
		{[]string{"deploy", "hello@9.9.9", "--all", "--dry-run"}, 1, "ferry: release hello@9.9.9 not found\n"},
	} {
		out, errOut, code := f.ferry(tt.args...)
		if code != tt.code || out != "" || errOut != tt.want {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q", strings.Join(tt.args, " "), code, out, errOut)
		}
	}
	f.mustFerry("release", "withdraw", "hello@1.0.0", "--reason", "crashes on start")
	_, errOut, code := f.ferry("deploy", "hello@1.0.0", "--all", "--dry-run")
	_, realErr, realCode := f.ferry("deploy", "hello@1.0.0", "--all")
	if code != 1 || realCode != 1 || errOut != realErr {
		t.Errorf("dry run of a withdrawn release: exit %d %q; the deploy itself: exit %d %q", code, errOut, realCode, realErr)
	}
}

// deploy --channel makes nodes follow the channel: a withdrawal moves them back to the
// channel's new candidate and their agents install it; undeploy takes the app off them.
func TestDeployFollowsChannel(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", nil)
	f.agent("ams-02", "ams", nil)
	f.push("hello", "1.0.0")
	f.push("hello", "1.1.0")
	if _, errOut, code := f.ferry("deploy", "hello@1.1.0", "--channel", "unstable", "--all"); code != 2 || !strings.Contains(errOut, "name the app alone") {
		t.Errorf("deploy APP@VER --channel: exit %d, %q", code, errOut)
	}
	if _, errOut, code := f.ferry("deploy", "hello", "--channel", "production", "--all"); code != 1 || !strings.Contains(errOut, "channel production holds no release of hello") {
		t.Errorf("deploy --channel without the app in it: exit %d, %q", code, errOut)
	}
	out := f.mustFerry("deploy", "hello", "--channel", "unstable", "--selector", "site=ams", "--wait", "-o", "json")
	var res deployOutcome
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Release != "hello@1.1.0" || len(res.Installed) != 2 {
		t.Fatalf("deploy --channel --wait: %+v %v\n%s", res, err, out)
	}
	n, err := f.admin.Node(f.ctx, "ams-01")
	if err != nil || len(n.Assigned) != 1 || n.Assigned[0].Channel != "unstable" {
		t.Fatalf("ams-01 assigned %+v %v", n.Assigned, err)
	}
	since := f.events()[len(f.events())-1].ID
	f.mustFerry("release", "withdraw", "hello@1.1.0", "--reason", "crashes on start")
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	for _, node := range []string{"ams-01", "ams-02"} {
		if _, err := f.admin.WaitEvent(ctx, since, func(e api.Event) bool {
			var p api.AppInstalled
			return e.Type == api.EventAppInstalled && e.Subject == node && e.Decode(&p) == nil && p.Version == "1.0.0"
		}); err != nil {
			t.Fatalf("%s did not go back to 1.0.0 after the withdrawal: %v", node, err)
		}
	}
	out = f.mustFerry("undeploy", "hello", "--selector", "site=ams", "--dry-run")
	if !strings.HasPrefix(out, "dry run: hello would be taken off 2 node(s)") {
		t.Errorf("undeploy --dry-run: %q", out)
	}
	var un api.Undeployed
	if err := json.Unmarshal([]byte(f.mustFerry("undeploy", "hello", "--all", "-o", "json")), &un); err != nil || len(un.Nodes) != 2 {
		t.Fatalf("undeploy: %+v %v", un, err)
	}
	if n, _ := f.admin.Node(f.ctx, "ams-02"); len(n.Assigned) != 0 {
		t.Errorf("ams-02 still assigned %+v", n.Assigned)
	}
	if out := f.mustFerry("undeploy", "hello", "--all"); out != "hello is assigned to none of the 2 matching node(s); nothing undeployed\n" {
		t.Errorf("undeploy again: %q", out)
	}
}

// deploy --wait prints each state a node reports on its way to the release, and a fresh install
// only ever moves forward: downloading, installing, starting, verifying, then installed (never
// back to starting once verifying). The agent's fault hook holds each step until the server has
// logged the state the agent reports for it, so that no state is merged into the next.
func TestDeployWaitStatesInOrder(t *testing.T) {
	f := newFleet(t)
	f.push("hello", "1.0.0")
	begin := make(chan struct{})
	f.agentWith("ams-01", "ams", nil, func(a *agent.Agent, app, step string) error {
		if step == "download" {
			<-begin
		}
		f.reported(a, "ams-01", app)
		return nil
	})
	printed := output.New()
	done := make(chan error, 1)
	env := map[string]string{"FERRY_ADDR": f.addr, "FERRY_TOKEN": f.token, "FERRY_CACERT": f.caFile}
	go func() {
		done <- run(f.ctx, []string{"deploy", "hello@1.0.0", "--all", "--wait"}, printed, io.Discard, func(k string) string { return env[k] })
	}()
	// The install starts once the deploy's answer is printed: --wait has looked at the nodes or
	// is about to, and finds the install under way.
	printed.Wait(t, "hello@1.0.0 assigned to 1 node(s)\n")
	close(begin)
	if err := <-done; err != nil {
		t.Fatalf("deploy --wait: %v\n%s", err, printed)
	}
	want := "hello@1.0.0 assigned to 1 node(s)\n" +
		"ams-01: hello@1.0.0 downloading\n" +
		"ams-01: hello@1.0.0 installing\n" +
		"ams-01: hello@1.0.0 starting\n" +
		"ams-01: hello@1.0.0 verifying\n" +
		"ams-01: installed hello@1.0.0 (1/1)\n"
	if got := printed.String(); got != want {
		t.Errorf("deploy --wait printed:\n%s\nwant:\n%s", got, want)
	}
}

// reported waits until the server's event log shows app on node in the state agent a reports
// for it now.
func (f *fleet) reported(a *agent.Agent, node, app string) {
	f.t.Helper()
	state := ""
	for _, na := range a.Apps() {
		if na.App == app {
			state = na.State
		}
	}
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	stateOf := func(e api.Event) string {
		var p api.AppStateChanged
		if e.Type != api.EventAppState || e.Subject != node || e.Decode(&p) != nil || p.App != app {
			return ""
		}
		return p.To
	}
	evs, err := f.admin.Events(ctx, 0, 10000)
	if err != nil {
		f.t.Error(err)
		return
	}
	last := ""
	for _, e := range evs {
		if s := stateOf(e); s != "" {
			last = s
		}
	}
	if state == "" || last == state {
		return
	}
	if _, err := f.admin.WaitEvent(ctx, evs[len(evs)-1].ID, func(e api.Event) bool { return stateOf(e) == state }); err != nil {
		f.t.Errorf("the server never logged %s on %s %s: %v", app, node, state, err)
	}
}

// A selector term with no value or with two operators is a usage error of the CLI (exit 2) and
// refused 400 by the server, with the same one line; nothing is assigned.
func TestDeploySelectorWithoutValue(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", nil)
	f.push("hello", "1.0.0")
	for _, sel := range []string{"site==", "site=", "role!=", "site===ams"} {
		_, parseErr := labels.ParseSelector(sel)
		if parseErr == nil {
			t.Fatalf("selector %q parses", sel)
		}
		out, errOut, code := f.ferry("deploy", "hello@1.0.0", "--selector", sel)
		if code != 2 || out != "" || errOut != "ferry: "+parseErr.Error()+"\n" {
			t.Errorf("deploy --selector %q: exit %d, stdout %q, stderr %q", sel, code, out, errOut)
		}
		_, err := f.admin.Deploy(f.ctx, api.Deploy{Release: "hello@1.0.0", Selector: sel})
		if client.StatusOf(err) != http.StatusBadRequest || err.Error() != parseErr.Error() {
			t.Errorf("server, deploy to %q: %v (status %d)", sel, err, client.StatusOf(err))
		}
	}
	if n, err := f.admin.Node(f.ctx, "ams-01"); err != nil || len(n.Assigned) != 0 {
		t.Errorf("a refused deploy assigned %+v (%v)", n.Assigned, err)
	}
}
