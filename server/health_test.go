package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
)

// An operator check reaches the agent it selects through its stream; the agent's results come
// back on the stream: a hard CRITICAL records check.state and raises an alert, which a webhook
// receives; acknowledged, the alert raises nothing more; OK clears it. Node and site health,
// the check list and the history follow. Removing the check takes it off the agent.
func TestChecksAndAlertsOverTheStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clk := clock.NewFake(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour})
	rc := newHookReceiver(t)
	hook, err := h.admin.AddWebhook(ctx, api.WebhookAdd{URL: rc.URL + "/ferry", Events: "alert.*"})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret.Store(hook.Secret)
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	st := openStream(t, ac, session().Token)
	st.Send(api.Sync{})
	if r, err := recv(t, st); err != nil || r.Desired == nil || len(r.Desired.Checks) != 0 {
		t.Fatalf("first answer: %+v %v", r, err)
	}

	spec := api.CheckSpec{Name: "load", Selector: "site=ams", Exec: []string{"/usr/lib/nagios/plugins/check_load", "-w", "5", "-c", "10"}, Retries: 2}
	if _, err := h.admin.AddCheck(ctx, spec); err != nil {
		t.Fatal(err)
	}
	r, err := recv(t, st)
	if err != nil || r.Desired == nil || len(r.Desired.Checks) != 1 || r.Desired.Checks[0].Name != "load" || r.Desired.Checks[0].Retries != 2 {
		t.Fatalf("push of the check: %+v %v", r, err)
	}
	gen := r.Desired.Generation
	send := func(res api.CheckResult) {
		t.Helper()
		res.Time = clk.Now()
		if err := st.Send(api.Sync{Generation: gen, Checks: []api.CheckResult{res}}); err != nil {
			t.Fatal(err)
		}
		if _, err := recv(t, st); err != nil { // answered once handled
			t.Fatal(err)
		}
	}
	since := lastEventID(t, h.admin)
	send(api.CheckResult{Check: "load", State: api.CheckCritical, Attempt: 1, Output: "CRITICAL - load average: 12.0"})
	send(api.CheckResult{Check: "load", State: api.CheckCritical, Hard: true, Attempt: 2, Output: "CRITICAL - load average: 12.5",
		Perf: []api.CheckPerf{{Label: "load1", Value: 12.5}}})
	raised := h.waitEvent(since, api.EventAlertRaised, "n1")
	if e := h.waitEvent(since, api.EventCheckState, "n1"); e.ID > raised.ID || e.Actor != "node:n1" {
		t.Fatalf("check.state %+v after alert.raised %+v", e, raised)
	}
	if e := recvHook(t, ctx, rc.taken); e.Type != api.EventAlertRaised || e.ID != raised.ID {
		t.Fatalf("the webhook got %+v; want alert.raised", e)
	}
	alerts, err := h.admin.Alerts(ctx, false)
	if err != nil || len(alerts) != 1 || alerts[0].State != api.CheckCritical || alerts[0].Output != "CRITICAL - load average: 12.5" {
		t.Fatalf("alerts %+v, %v", alerts, err)
	}
	if n, _ := h.admin.Node(ctx, "n1"); n.Health != api.HealthCritical {
		t.Fatalf("node health %q", n.Health)
	}
	if sites, _ := h.admin.Sites(ctx); len(sites) != 1 || sites[0].Health != api.HealthCritical {
		t.Fatalf("sites %+v", sites)
	}

	acked, err := h.admin.AckAlert(ctx, alerts[0].ID, "known: backup job")
	if err != nil || acked.AckedBy == "" || acked.Comment != "known: backup job" {
		t.Fatalf("ack: %+v %v", acked, err)
	}
	if e := recvHook(t, ctx, rc.taken); e.Type != api.EventAlertAcked {
		t.Fatalf("the webhook got %+v; want alert.acked", e)
	}
	since = lastEventID(t, h.admin)
	send(api.CheckResult{Check: "load", State: api.CheckWarning, Hard: true, Attempt: 2, Output: "WARNING - load average: 6.0"})
	send(api.CheckResult{Check: "load", State: api.CheckOK, Hard: true, Output: "OK - load average: 0.5"})
	cleared := h.waitEvent(since, api.EventAlertCleared, "n1")
	evs, err := h.admin.Events(ctx, since, 100)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if strings.Join(types, " ") != "check.state check.state alert.cleared" {
		t.Fatalf("after the ack: %v; want two state changes and the clearing, nothing raised", types)
	}
	if e := recvHook(t, ctx, rc.taken); e.ID != cleared.ID {
		t.Fatalf("the webhook got %+v; want alert.cleared", e)
	}
	if open, _ := h.admin.Alerts(ctx, false); len(open) != 0 {
		t.Fatalf("open alerts after OK: %+v", open)
	}
	if all, _ := h.admin.Alerts(ctx, true); len(all) != 1 || all[0].ClearedAt == nil {
		t.Fatalf("all alerts: %+v", all)
	}

	checks, err := h.admin.Checks(ctx)
	if err != nil || len(checks) != 1 || len(checks[0].Results) != 1 {
		t.Fatalf("checks %+v, %v", checks, err)
	}
	if got := checks[0].Results[0]; got.Node != "n1" || got.State != api.CheckOK || !got.Hard || got.Output != "OK - load average: 0.5" {
		t.Fatalf("latest result %+v", got)
	}
	hist, err := h.admin.CheckHistory(ctx, "load", "n1", time.Hour)
	if err != nil || len(hist) != 1 || hist[0].Count != 4 || hist[0].Worst != api.CheckCritical || len(hist[0].Perf) != 1 {
		t.Fatalf("history %+v, %v", hist, err)
	}

	// A result of a check the node is not given is dropped; a malformed one ends the stream.
	send(api.CheckResult{Check: "other", State: api.CheckCritical, Hard: true})
	if err := st.Send(api.Sync{Generation: gen, Checks: []api.CheckResult{{Check: "load", State: "BROKEN", Time: clk.Now()}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, st); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "unknown state") {
		t.Fatalf("a malformed result: %v", err)
	}
	if _, err := recv(t, st); !errors.Is(err, io.EOF) {
		t.Fatalf("stream open after a malformed result: %v", err)
	}

	st = openStream(t, ac, session().Token)
	st.Send(api.Sync{Generation: gen})
	recv(t, st)
	if err := h.admin.RemoveCheck(ctx, "load"); err != nil {
		t.Fatal(err)
	}
	if r, err := recv(t, st); err != nil || r.Desired == nil || r.Desired.Generation != gen+1 || len(r.Desired.Checks) != 0 {
		t.Fatalf("push after removal: %+v %v", r, err)
	}
	if checks, _ := h.admin.Checks(ctx); len(checks) != 0 {
		t.Fatalf("checks after removal: %+v", checks)
	}

	// A site's labels choose checks too: labelling the site gives its node the check that now
	// selects it, and a label that changes no check's choice moves no generation.
	if _, err := h.admin.AddCheck(ctx, api.CheckSpec{Name: "ssh", Selector: "zone=eu", TCP: "127.0.0.1:22"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.LabelSite(ctx, "ams", api.LabelChange{Set: map[string]string{"zone": "eu"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := recv(t, st); err != nil || r.Desired == nil || r.Desired.Generation != gen+2 || len(r.Desired.Checks) != 1 || r.Desired.Checks[0].Name != "ssh" {
		t.Fatalf("push after the site's labels: %+v %v", r, err)
	}
	if _, err := h.admin.LabelSite(ctx, "ams", api.LabelChange{Set: map[string]string{"owner": "ops"}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := h.admin.Node(ctx, "n1"); n.Generation != gen+2 {
		t.Fatalf("a label no check looks at moved n1 to generation %d", n.Generation)
	}

	// A removed node's alerts end with it.
	gen += 2
	send(api.CheckResult{Check: "ssh", State: api.CheckCritical, Hard: true, Attempt: 3, Output: "connection refused"})
	if open, _ := h.admin.Alerts(ctx, false); len(open) != 1 || open[0].Check != "ssh" {
		t.Fatalf("open alerts: %+v", open)
	}
	since = lastEventID(t, h.admin)
	if err := h.admin.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	var p api.AlertCleared
	if e := h.waitEvent(since, api.EventAlertCleared, "n1"); e.Decode(&p) != nil || p.Reason != "removed" || p.Check != "ssh" {
		t.Fatalf("alert.cleared %+v", p)
	}
	if open, _ := h.admin.Alerts(ctx, false); len(open) != 0 {
		t.Fatalf("open alerts after the node's removal: %+v", open)
	}
	if checks, _ := h.admin.Checks(ctx); len(checks) != 1 || len(checks[0].Results) != 0 {
		t.Fatalf("checks after the node's removal: %+v", checks)
	}
}

// A real agent runs the operator check the server gives it, a plugin in a child process, and
// its hard CRITICAL raises an alert on the server.
func TestRealAgentCheckRaisesAlert(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	h.site("ams", 1)
	since := lastEventID(t, h.admin)
	if _, err := h.admin.AddCheck(ctx, api.CheckSpec{Name: "always-critical", Selector: "site=ams", Retries: 1,
		Exec: []string{"/bin/sh", "-c", "echo 'CRITICAL - nothing works|errors=3;1;2'; exit 2"}}); err != nil {
		t.Fatal(err)
	}
	h.runAgent("n1", h.enrollToken("ams", 1), "")
	e := h.waitEvent(since, api.EventAlertRaised, "n1")
	var p api.AlertRaised
	if e.Decode(&p) != nil || p.Check != "always-critical" || p.State != api.CheckCritical || p.Output != "CRITICAL - nothing works" {
		t.Fatalf("alert.raised %+v", p)
	}
	if n, _ := h.admin.Node(ctx, "n1"); n.Health != api.HealthCritical {
		t.Fatalf("node health %q", n.Health)
	}
}
