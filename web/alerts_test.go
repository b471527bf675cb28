package web_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/server"
)

// A real agent's TCP check of a closed port raises an alert; the alerts page, open in a real
// browser, shows it as it comes, an admin acknowledges it there and the page says who did. A
// viewer sees no form, and its acknowledgement is refused.
func TestBrowserAlerts(t *testing.T) {
	s := startSite(t, server.Config{HeartbeatInterval: 250 * time.Millisecond, HeartbeatGrace: 2 * time.Second})
	if _, err := s.admin.AddSite(s.ctx, client.SiteAdd{Name: "ams", Tier: 1, Lat: coord(52.37), Lon: coord(4.9)}); err != nil {
		t.Fatal(err)
	}
	run, screenshot := s.drive(2 * time.Minute)
	var title string
	run("sign in to the alerts page",
		s.signInAt("/alerts"),
		chromedp.WaitVisible("#al-empty", chromedp.ByID),
		chromedp.WaitVisible("#al-live", chromedp.ByID),
		chromedp.Title(&title),
	)
	if title != "Alerts — Ferry" {
		t.Errorf("the alerts page's title is %q", title)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // nothing listens there now: a TCP check of it goes CRITICAL at once
	if _, err := s.admin.AddCheck(s.ctx, api.CheckSpec{Name: "svc", Selector: "site=ams", Retries: 1, TCP: l.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	s.runAgent("ams-01", "ams")
	wait, stop := context.WithTimeout(s.ctx, 30*time.Second)
	defer stop()
	raised, err := s.admin.WaitEvent(wait, 0, func(e api.Event) bool { return e.Type == api.EventAlertRaised && e.Subject == "ams-01" })
	if err != nil {
		t.Fatalf("no alert raised: %v", err)
	}
	var a api.AlertRaised
	if err := raised.Decode(&a); err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(a.ID, 10)
	row := `#alerts tr[data-alert="` + id + `"]`

	// The alert comes onto the open page by itself; the admin acknowledges it there.
	var text string
	run("the alert shows",
		chromedp.WaitVisible(row, chromedp.ByQuery),
		chromedp.Text(row, &text, chromedp.ByQuery),
	)
	if !strings.Contains(text, "ams-01") || !strings.Contains(text, "svc") || !strings.Contains(text, api.CheckCritical) {
		t.Fatalf("the alert's row says %q", text)
	}
	screenshot("alert-open")

	// A viewer sees the alert without a form, and may not acknowledge it.
	viewer := s.browser()
	viewer.signIn(s.token(api.RoleViewer).Secret)
	if _, page := viewer.do("GET", "/alerts", nil, nil); !strings.Contains(page, `data-alert="`+id+`"`) || strings.Contains(page, `action="/alerts/`) {
		t.Errorf("a viewer's alerts page:\n%s", page)
	}
	if resp, body := viewer.do("POST", "/alerts/"+id+"/ack", url.Values{"csrf": {viewer.csrf()}, "comment": {"mine"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's acknowledgement: %d\n%.300s", resp.StatusCode, body)
	}

	run("the admin acknowledges",
		chromedp.SendKeys("#ack-comment-"+id, "port closed on purpose", chromedp.ByID),
		chromedp.Click("#ack-"+id, chromedp.ByID),
		chromedp.WaitVisible(row+` [data-f="acked"] b`, chromedp.ByQuery),
		chromedp.Text(row+` [data-f="acked"]`, &text, chromedp.ByQuery),
	)
	if !strings.HasPrefix(text, "by token:") || !strings.Contains(text, "port closed on purpose") {
		t.Errorf("after the acknowledgement the row says %q", text)
	}
	alerts, err := s.admin.Alerts(s.ctx, false)
	if err != nil || len(alerts) != 1 || alerts[0].AckedBy == "" || !strings.Contains(text, alerts[0].AckedBy) {
		t.Errorf("alerts after the acknowledgement: %+v, %v", alerts, err)
	}
	screenshot("alert-acked")

	// The node's page is titled for it and words its events.
	var events string
	run("the node page",
		chromedp.Navigate(s.addr+"/nodes/ams-01"),
		chromedp.WaitVisible("#node-health", chromedp.ByID),
		chromedp.Title(&title),
		chromedp.Text("ul.events", &events, chromedp.ByQuery),
	)
	if title != "Node ams-01 — Ferry" {
		t.Errorf("the node page's title is %q", title)
	}
	for _, want := range []string{"alert " + id + " on check svc acknowledged: port closed on purpose", "alert " + id + " raised: check svc CRITICAL", "enrolled at site ams"} {
		if !strings.Contains(events, want) {
			t.Errorf("the node's events lack %q:\n%s", want, events)
		}
	}
	screenshot("node")
}
