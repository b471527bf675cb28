package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// A site's labels, set with ferry site label against a real server with real agents, are what
// every selection sees on the site's nodes: node list, deploy, undeploy, node label and app
// status select by them; a node's own label of the same key wins; site show and site list
// show them. Reserved keys, bad labels and an unknown site are refused in one line with
// nothing changed, and relabelling a site moves no node's generation.
func TestSiteLabels(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", map[string]string{"role": "mirror"})
	f.agent("ams-02", "ams", map[string]string{"role": "depot", "pilot": "none"})
	f.agent("gva-01", "gva", map[string]string{"role": "mirror"})
	f.push("hello", "1.0.0")
	selected := func(sel string) string {
		t.Helper()
		var nodes []api.Node
		out := f.mustFerry("node", "list", "--selector", sel, "-o", "json")
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			t.Fatalf("node list -o json: %v\n%s", err, out)
		}
		var names []string
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		return strings.Join(names, " ")
	}
	before, _ := f.admin.Node(f.ctx, "ams-01")

	if out := f.mustFerry("site", "label", "ams", "pilot=breaking", "zone=eu"); out != "site ams now labelled pilot=breaking,zone=eu\n" {
		t.Errorf("site label:\n%q", out)
	}
	for sel, want := range map[string]string{
		"pilot=breaking":             "ams-01",
		"pilot=none":                 "ams-02", // its own label wins over its site's
		"zone=eu":                    "ams-01 ams-02",
		"zone=eu,role=mirror,tier=2": "ams-01",
		"site=ams,pilot!=breaking":   "ams-02",
		"!zone":                      "gva-01",
	} {
		if got := selected(sel); got != want {
			t.Errorf("node list --selector %s = %q, want %q", sel, got, want)
		}
	}
	if n, _ := f.admin.Node(f.ctx, "ams-01"); n.Generation != before.Generation || len(n.Assigned) != 0 {
		t.Errorf("labelling its site changed ams-01's desired state: %+v", n)
	}

	// site show and site list show the labels, in a table and in JSON; node show shows a
	// node's site labels apart from its own.
	if out := f.mustFerry("site", "show", "ams"); !strings.Contains(out, "labels      pilot=breaking,zone=eu\n") {
		t.Errorf("site show:\n%s", out)
	}
	var site api.Site
	if out := f.mustFerry("site", "show", "ams", "-o", "json"); json.Unmarshal([]byte(out), &site) != nil || site.Labels["pilot"] != "breaking" || site.Labels["zone"] != "eu" {
		t.Errorf("site show -o json:\n%s", out)
	}
	out := f.mustFerry("site", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "LABELS") || !strings.Contains(lines[1], " pilot=breaking,zone=eu ") || !strings.Contains(lines[2], " - ") {
		t.Errorf("site list:\n%s", out)
	}
	var sites []api.Site
	if out := f.mustFerry("site", "list", "-o", "json"); json.Unmarshal([]byte(out), &sites) != nil || len(sites) != 2 ||
		sites[0].Labels["pilot"] != "breaking" || sites[1].Labels == nil || !strings.Contains(out, `"labels": {}`) {
		t.Errorf("site list -o json:\n%s", out)
	}
	if out := f.mustFerry("node", "show", "ams-02"); !strings.Contains(out, "labels       pilot=none,role=depot\n") || !strings.Contains(out, "site labels  pilot=breaking,zone=eu\n") {
		t.Errorf("node show:\n%s", out)
	}

	// Deploy, app status, node label and undeploy select by the site's label.
	var dep api.Deployed
	if out := f.mustFerry("deploy", "hello@1.0.0", "--selector", "pilot=breaking", "-o", "json"); json.Unmarshal([]byte(out), &dep) != nil ||
		strings.Join(dep.Nodes, " ") != "ams-01" || dep.Matched != 1 {
		t.Errorf("deploy --selector pilot=breaking:\n%s", out)
	}
	for _, name := range []string{"ams-02", "gva-01"} {
		if n, _ := f.admin.Node(f.ctx, name); len(n.Assigned) != 0 {
			t.Errorf("a deploy to pilot=breaking assigned %s: %+v", name, n.Assigned)
		}
	}
	for sel, want := range map[string]int{"zone=eu": 1, "!zone": 0} {
		var st AppStatus
		if out := f.mustFerry("app", "status", "hello", "--selector", sel, "-o", "json"); json.Unmarshal([]byte(out), &st) != nil || st.Nodes != want {
			t.Errorf("app status --selector %s (want %d node(s)):\n%s", sel, want, out)
		}
	}
	if out := f.mustFerry("node", "label", "--selector", "pilot=breaking", "wave=1"); out != "1 node(s) relabelled\n" {
		t.Errorf("node label --selector pilot=breaking:\n%s", out)
	}
	if n, _ := f.admin.Node(f.ctx, "ams-01"); n.Labels["wave"] != "1" || n.Labels["pilot"] != "" {
		t.Errorf("node label by a site label: %+v", n.Labels)
	}
	var und api.Undeployed
	if out := f.mustFerry("undeploy", "hello", "--selector", "pilot=breaking", "-o", "json"); json.Unmarshal([]byte(out), &und) != nil ||
		strings.Join(und.Nodes, " ") != "ams-01" {
		t.Errorf("undeploy --selector pilot=breaking:\n%s", out)
	}

	// Refusals: one line, nothing changed. (The agents report meanwhile: count what operators
	// did.)
	operatorEvents := func() (n int) {
		for _, e := range f.events() {
			if strings.HasPrefix(e.Actor, "token:") {
				n++
			}
		}
		return n
	}
	evs := operatorEvents()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"site", "label", "ams", "site=gva"}, 2, "ferry: label \"site\" is implicit (every node carries its site's name and tier) and cannot be set\n"},
		{[]string{"site", "label", "ams", "tier=1"}, 2, "ferry: label \"tier\" is implicit (every node carries its site's name and tier) and cannot be set\n"},
		{[]string{"site", "label", "ams", "Pilot=x"}, 2, "ferry: invalid label key \"Pilot\": use 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit\n"},
		{[]string{"site", "label", "ams", "pilot"}, 2, "ferry: invalid label \"pilot\": want key=value\n"},
		{[]string{"site", "label", "ams"}, 2, "ferry: site label: give key=value to set or key- to remove\n"},
		{[]string{"site", "label", "nope", "pilot=breaking"}, 1, "ferry: site \"nope\" not found\n"},
	} {
		out, errOut, code := f.ferry(tt.args...)
		if code != tt.code || out != "" || errOut != tt.want {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit %d, %q", strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.want)
		}
	}
	if got := operatorEvents(); got != evs {
		t.Errorf("refused site labels logged %d event(s)", got-evs)
	}
	if s, _ := f.admin.Site(f.ctx, "ams"); len(s.Labels) != 2 {
		t.Errorf("refused site labels changed the site: %+v", s.Labels)
	}

	// One site.labeled event per change, with its actor and what it set and removed; removing
	// the labels takes the nodes out of the selection again.
	if out := f.mustFerry("site", "label", "ams", "pilot-", "zone-"); out != "site ams now has no labels\n" {
		t.Errorf("site label k-:\n%q", out)
	}
	if got := selected("pilot=breaking"); got != "" {
		t.Errorf("pilot=breaking after the site's label was removed selects %q", got)
	}
	var labeled []api.SiteLabeled
	for _, e := range f.events() {
		if e.Type == api.EventSiteLabeled {
			var p api.SiteLabeled
			if e.Subject != "ams" || !strings.HasPrefix(e.Actor, "token:") || e.Decode(&p) != nil {
				t.Errorf("site.labeled event: %+v", e)
			}
			labeled = append(labeled, p)
		}
	}
	if len(labeled) != 2 || labeled[0].Set["pilot"] != "breaking" || !slices.Equal(labeled[1].Removed, []string{"pilot", "zone"}) || len(labeled[1].Labels) != 0 {
		t.Errorf("site.labeled events: %+v", labeled)
	}
}
