package agent_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
)

// An operator's check reaches a real agent, which runs Debian's check_tcp against a port: when
// the port closes, the check turns CRITICAL and, once hard, raises an alert; an acknowledgement
// silences it; when the port opens again, the alert clears and the check's latest result is OK.
func TestOperatorCheckRaisesAndClearsAnAlert(t *testing.T) {
	r := newRig(t)
	ctx := r.ctx
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	serve := func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}
	go serve(l)
	r.start("n1", t.TempDir(), agent.Config{})
	start, err := r.admin.Events(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	since := start[len(start)-1].ID
	_, port, _ := net.SplitHostPort(addr)
	if _, err := r.admin.AddCheck(ctx, api.CheckSpec{Name: "svc", Selector: "role=n1",
		Exec:     []string{"/usr/lib/nagios/plugins/check_tcp", "-H", "127.0.0.1", "-p", port, "-t", "5"},
		Interval: api.Duration(time.Second), RetryInterval: api.Duration(time.Second), Retries: 2}); err != nil {
		t.Fatal(err)
	}

	l.Close() // the service goes away
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ev, err := r.admin.WaitEvent(wctx, since, func(e api.Event) bool { return e.Type == api.EventAlertRaised && e.Subject == "n1" })
	if err != nil {
		t.Fatalf("no alert raised: %v", err)
	}
	var raised api.AlertRaised
	if err := ev.Decode(&raised); err != nil || raised.Check != "svc" || raised.State != api.CheckCritical || !strings.Contains(raised.Output, "refused") {
		t.Fatalf("alert.raised %+v (%v)", raised, err)
	}
	alerts, err := r.admin.Alerts(ctx, false)
	if err != nil || len(alerts) != 1 || alerts[0].ID != raised.ID || alerts[0].AckedBy != "" {
		t.Fatalf("open alerts %+v, %v", alerts, err)
	}
	if _, err := r.admin.AckAlert(ctx, raised.ID, "known: maintenance"); err != nil {
		t.Fatal(err)
	}
	if alerts, err = r.admin.Alerts(ctx, false); err != nil || len(alerts) != 1 || alerts[0].AckedBy == "" || alerts[0].Comment != "known: maintenance" {
		t.Fatalf("acked alert %+v, %v", alerts, err)
	}

	l2, err := net.Listen("tcp", addr) // the service is back, on the same port
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go serve(l2)
	ev, err = r.admin.WaitEvent(wctx, ev.ID, func(e api.Event) bool { return e.Type == api.EventAlertCleared && e.Subject == "n1" })
	if err != nil {
		t.Fatalf("the alert did not clear: %v", err)
	}
	var cleared api.AlertCleared
	if err := ev.Decode(&cleared); err != nil || cleared.ID != raised.ID || cleared.Reason != "ok" {
		t.Fatalf("alert.cleared %+v (%v)", cleared, err)
	}
	checks, err := r.admin.Checks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var latest *api.NodeCheck
	for _, c := range checks {
		for i, res := range c.Results {
			if c.Name == "svc" && res.Node == "n1" {
				latest = &c.Results[i]
			}
		}
	}
	if latest == nil || latest.State != api.CheckOK || !strings.HasPrefix(latest.Output, "TCP OK") {
		t.Fatalf("latest result of svc on n1: %+v", latest)
	}
	if alerts, err = r.admin.Alerts(ctx, false); err != nil || len(alerts) != 0 {
		t.Fatalf("open alerts after the recovery %+v, %v", alerts, err)
	}
}
