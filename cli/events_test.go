package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
)

// eventsJSON runs ferry events -o json with args and returns the events.
func (f *fleet) eventsJSON(args ...string) []api.Event {
	f.t.Helper()
	var evs []api.Event
	out := f.mustFerry(append([]string{"events", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		f.t.Fatalf("%v:\n%s", err, out)
	}
	return evs
}

func ids(evs []api.Event) string {
	s := make([]string, len(evs))
	for i, ev := range evs {
		s[i] = strconv.FormatInt(ev.ID, 10)
	}
	return strings.Join(s, " ")
}

// newest is the ids of the last n events of evs that keep accepts.
func newest(evs []api.Event, n int, keep func(api.Event) bool) string {
	var kept []api.Event
	for _, ev := range evs {
		if keep(ev) {
			kept = append(kept, ev)
		}
	}
	return ids(kept[max(len(kept)-n, 0):])
}

// ferry events shows the newest 50 events by default, oldest first; --since pages forward;
// --type, --node and --site filter.
func TestEvents(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", nil)
	f.agent("gva-01", "gva", nil)
	for i := range 60 {
		f.mustFerry("site", "add", fmt.Sprintf("s%02d", i), "--tier", "3")
	}
	all := f.events()
	every := func(api.Event) bool { return true }

	if got, want := ids(f.eventsJSON()), newest(all, 50, every); got != want {
		t.Errorf("ferry events: %s, want the newest 50: %s", got, want)
	}
	if got, want := ids(f.eventsJSON("--limit", "3")), newest(all, 3, every); got != want {
		t.Errorf("--limit 3: %s, want %s", got, want)
	}
	if got := f.eventsJSON("--limit", "0"); ids(got) != ids(all) {
		t.Errorf("--limit 0: %d events, want all %d", len(got), len(all))
	}
	if got, want := ids(f.eventsJSON("--since", "4", "--limit", "3")), "5 6 7"; got != want {
		t.Errorf("--since 4 --limit 3: %s, want %s", got, want)
	}
	if got := f.eventsJSON("--since", strconv.FormatInt(all[len(all)-1].ID, 10)); len(got) != 0 {
		t.Errorf("--since the last id: %s", ids(got))
	}

	isType := func(types ...string) func(api.Event) bool {
		return func(ev api.Event) bool { return strings.Contains(" "+strings.Join(types, " ")+" ", " "+ev.Type+" ") }
	}
	subjectIn := func(subjects ...string) func(api.Event) bool {
		return func(ev api.Event) bool {
			return strings.Contains(" "+strings.Join(subjects, " ")+" ", " "+ev.Subject+" ")
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--type", "site.added", "--limit", "2"}, newest(all, 2, isType("site.added"))},
		{[]string{"--type", "node.*"}, newest(all, 50, isType("node.enrolled"))},
		{[]string{"--type", "token.created", "--type", "node.enrolled"}, newest(all, 50, isType("token.created", "node.enrolled"))},
		{[]string{"--type", "site.added,node.enrolled", "--limit", "4"}, newest(all, 4, isType("site.added", "node.enrolled"))},
		{[]string{"--node", "ams-01"}, newest(all, 50, func(ev api.Event) bool { return ev.Type == "node.enrolled" && ev.Subject == "ams-01" })},
		// The site, the token made for it (data.site) and its node.
		{[]string{"--site", "gva"}, newest(all, 50, func(ev api.Event) bool {
			return ev.Type == "site.added" && ev.Subject == "gva" || ev.Type == "token.created" && ev.Fields()["site"] == "gva" ||
				ev.Type == "node.enrolled" && ev.Subject == "gva-01"
		})},
		{[]string{"--site", "gva", "--type", "node.enrolled"}, newest(all, 50, subjectIn("gva-01"))},
		{[]string{"--node", "nobody"}, ""},
	} {
		if got := ids(f.eventsJSON(tt.args...)); got != tt.want || got == "" && tt.args[1] != "nobody" {
			t.Errorf("ferry events %s: %s, want %s", strings.Join(tt.args, " "), got, tt.want)
		}
	}

	out := f.mustFerry("events", "--type", "node.enrolled")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "ams-01") || !strings.Contains(lines[2], "gva-01") {
		t.Errorf("events table:\n%s", out)
	}

	for _, tt := range []struct{ args, want string }{
		{"--limit -1", "ferry: events: --limit must be 0 (no limit) or more\n"},
		{"--since -1", "ferry: events: --since must be 0 or more\n"},
		{"--type [", `ferry: events: invalid --type "[": want a type such as app.installed, or a glob such as 'app.*'` + "\n"},
	} {
		out, errOut, code := f.ferry(append([]string{"events"}, strings.Fields(tt.args)...)...)
		if code != 2 || out != "" || errOut != tt.want {
			t.Errorf("ferry events %s: exit %d, stdout %q, stderr %q", tt.args, code, out, errOut)
		}
	}
}

// newestEvents finds the newest events of a log longer than a page without reading it from the
// start, whatever the filter keeps, and says where the log ends.
func TestNewestEventsPaging(t *testing.T) {
	f := newFleet(t)
	for i := range 90 {
		if _, err := f.admin.AddSite(f.ctx, client.SiteAdd{Name: fmt.Sprintf("s%02d", i), Tier: 3}); err != nil {
			t.Fatal(err)
		}
	}
	all := f.events()
	last := all[len(all)-1].ID
	filters := map[string]func(api.Event) bool{
		"every":     func(api.Event) bool { return true },
		"every 9th": func(ev api.Event) bool { return ev.ID%9 == 0 },
		"the first": func(ev api.Event) bool { return ev.ID == all[0].ID },
		"none":      func(api.Event) bool { return false },
	}
	for name, keep := range filters {
		for _, page := range []int{2, 7, 1000} {
			for _, limit := range []int{1, 3, 200} {
				got, top, err := newestEvents(f.ctx, f.admin, limit, page, keep)
				if err != nil {
					t.Fatal(err)
				}
				if want := newest(all, limit, keep); ids(got) != want || top != last {
					t.Errorf("%s, page %d, limit %d: %s (log ends at %d), want %s (ends at %d)", name, page, limit, ids(got), top, want, last)
				}
			}
		}
	}
	// The newest few of a long log cost a few requests, not one per page of the whole log.
	counted := &countingTransport{next: f.admin.HTTP.Transport}
	f.admin.HTTP.Transport = counted
	if _, _, err := newestEvents(f.ctx, f.admin, 3, 2, filters["every"]); err != nil {
		t.Fatal(err)
	}
	if n, forward := counted.n.Load(), int64(len(all)/2); n > forward/2 {
		t.Errorf("the newest 3 of %d events took %d requests of 2 events; reading forward takes %d", len(all), n, forward)
	}
}

type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// events --follow shows the newest events that pass the filters, then streams the new ones
// that do.
func TestEventsFollow(t *testing.T) {
	f := newFleet(t)
	for _, s := range []string{"a", "b", "c"} {
		f.mustFerry("site", "add", s, "--tier", "3")
	}
	env := map[string]string{"FERRY_ADDR": f.addr, "FERRY_TOKEN": f.token, "FERRY_CACERT": f.caFile}
	ctx, cancel := context.WithCancel(f.ctx)
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"events", "--follow", "--limit", "2", "--type", "site.*", "-o", "json"}, w, io.Discard,
			func(k string) string { return env[k] })
		w.Close()
	}()
	dec := json.NewDecoder(bufio.NewReader(r))
	next := func() api.Event {
		t.Helper()
		var ev api.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("follower: %v", err)
		}
		return ev
	}
	if a, b := next(), next(); a.Subject != "b" || b.Subject != "c" {
		t.Fatalf("follower began with %s %s, want the newest two: b c", a.Subject, b.Subject)
	}
	f.mustFerry("token", "create", "--role", "viewer") // not a site event
	f.mustFerry("site", "add", "d", "--tier", "3")
	if ev := next(); ev.Type != "site.added" || ev.Subject != "d" {
		t.Fatalf("follower streamed %+v, want site.added d", ev)
	}
	cancel()
	go io.Copy(io.Discard, r)
	if err := <-done; err != nil {
		t.Fatalf("follower ended with %v", err)
	}
}
