package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/overview"
	"github.com/ferryhq/ferry/store"
)

// promtool is Debian's promtool (package prometheus); `make test` installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: run the suite with `make test`, which installs Debian's prometheus package")
	}
	return p
}

// scrape reads /metrics with tok (none when empty) and returns its status and body.
func (h *harness) scrape(tok string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.addr+"/metrics", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// samples reads the exposition's samples, keyed by series as printed: name{label="v",...},
// labels in name order.
func samples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// checkMetrics runs promtool check metrics on an exposition and fails on any complaint.
func checkMetrics(t *testing.T, text string) {
	t.Helper()
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// The fleet's gauges come from real agents' enrollment, status and reports and from an open
// rollout; promtool accepts the exposition; a scrape reuses the snapshot for fleetMaxAge after
// the fleet changed, then reads it anew.
func TestMetricsFleetGauges(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour, Clock: clk})
	ctx := context.Background()
	h.site("ams", 1)
	h.site("fra", 2)
	h.site("lis", 3)
	tok := h.enrollToken("ams", 2)
	for _, n := range []string{"a1", "a2"} {
		h.runAgent(n, tok, "")
	}
	h.runAgent("f1", h.enrollToken("fra", 1), "")
	for _, n := range []string{"a1", "a2", "f1"} {
		h.waitEvent(0, api.EventNodeEnrolled, n)
	}
	pushSigned(t, h, "hello", "1.0.0")
	since := lastEventID(t, h.admin)
	if _, err := h.admin.Deploy(ctx, api.Deploy{Release: "hello@1.0.0", Selector: "site"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a1", "a2", "f1"} {
		h.waitEvent(since, api.EventAppInstalled, n)
	}
	pushSigned(t, h, "hello", "1.1.0")
	r, err := h.admin.StartRollout(ctx, api.RolloutStart{App: "hello", Version: "1.1.0", PolicyYAML: `name: gated
waves:
  - {name: pilot, selector: "site=ams", approval: {count: 1}}
  - {name: rest}
`})
	if err != nil {
		t.Fatal(err)
	}
	wc, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := h.admin.WaitEvent(wc, since, func(e api.Event) bool {
		var d api.RolloutWaveChanged
		return e.Type == api.EventRolloutWave && e.Decode(&d) == nil && d.State == "awaiting_approval"
	}); err != nil {
		t.Fatal(err)
	}

	text := scrapeOK(h)
	checkMetrics(t, text)
	id := strconv.FormatInt(r.ID, 10)
	want := map[string]float64{
		`ferry_nodes{site="ams",status="up"}`:                                                          2,
		`ferry_nodes{site="ams",status="down"}`:                                                        0,
		`ferry_nodes{site="fra",status="up"}`:                                                          1,
		`ferry_nodes{site="lis",status="up"}`:                                                          0,
		`ferry_sites{health="ok"}`:                                                                     2,
		`ferry_sites{health="unknown"}`:                                                                1,
		`ferry_sites{health="unreachable"}`:                                                            0,
		`ferry_apps{app="hello",state="stopped",version="1.0.0"}`:                                      3,
		`ferry_rollout_state{release="hello@1.1.0",rollout="` + id + `",state="running"}`:              1,
		`ferry_rollout_state{release="hello@1.1.0",rollout="` + id + `",state="completed"}`:            0,
		`ferry_rollout_nodes{release="hello@1.1.0",rollout="` + id + `",state="pending",wave="pilot"}`: 2,
		`ferry_rollout_nodes{release="hello@1.1.0",rollout="` + id + `",state="pending",wave="rest"}`:  1,
		`ferry_rollout_nodes{release="hello@1.1.0",rollout="` + id + `",state="done",wave="pilot"}`:    0,
		`ferry_checks{state="CRITICAL"}`:                                                               0,
		`ferry_alerts_open`:                                                                            0,
	}
	got := samples(t, text)
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
		}
	}
	if t.Failed() {
		t.Fatalf("exposition:\n%s", text)
	}

	// A change: the scrape within fleetMaxAge of the last reuses its snapshot, the one after
	// reads the fleet anew.
	h.site("osl", 3)
	osl := `ferry_nodes{site="osl",status="up"}`
	if _, seen := samples(t, scrapeOK(h))[osl]; seen {
		t.Fatalf("a scrape within fleetMaxAge of the last read the fleet anew")
	}
	// A caller that has seen the site's event (a live page) gets a snapshot that holds it,
	// however young the last one.
	added := lastEventID(t, h.admin)
	snap, err := h.srv.overview.SnapshotSince(ctx, added, time.Hour)
	if err != nil || snap.Event < added || !slices.ContainsFunc(snap.Sites, func(s api.SiteStatus) bool { return s.Name == "osl" }) {
		t.Fatalf("a snapshot since event %d: %+v, %v", added, snap, err)
	}
	clk.Advance(fleetMaxAge)
	if _, seen := samples(t, scrapeOK(h))[osl]; !seen {
		t.Fatalf("a scrape fleetMaxAge after the last reused its snapshot")
	}

	// Three hours pass on the fake clock, in which no agent speaks (they would each hour of the
	// real one): every node is down, and every site with nodes unreachable.
	since = lastEventID(t, h.admin) // before the clock moves: the server's own sweep may run at once
	clk.Advance(3 * time.Hour)
	h.srv.Sweep(ctx)
	for _, n := range []string{"a1", "a2", "f1"} {
		h.waitEvent(since, api.EventNodeDown, n)
	}
	text = scrapeOK(h)
	got = samples(t, text)
	if got[`ferry_nodes{site="ams",status="down"}`] != 2 || got[`ferry_nodes{site="fra",status="up"}`] != 0 ||
		got[`ferry_sites{health="unreachable"}`] != 2 || got[`ferry_sites{health="ok"}`] != 0 {
		t.Fatalf("with every node down:\n%s", text)
	}
	checkMetrics(t, text)
}

// scrapeOK reads /metrics, which must answer 200.
func scrapeOK(h *harness) string {
	h.t.Helper()
	code, text := h.scrape("")
	if code != http.StatusOK {
		h.t.Fatalf("/metrics: %d %s", code, text)
	}
	return text
}

// /metrics is public by default; with a metrics token it answers only a request bearing it,
// not even one with the admin token.
func TestMetricsToken(t *testing.T) {
	if code, _ := start(t, Config{}).scrape(""); code != http.StatusOK {
		t.Fatalf("public /metrics: %d", code)
	}
	const token = "scrape-7c1f0e9a"
	h := start(t, Config{MetricsToken: token})
	for _, tok := range []string{"", "scrape", token + "x", h.srv.AdminToken} {
		if code, body := h.scrape(tok); code != http.StatusUnauthorized || !strings.Contains(body, "metrics token") {
			t.Errorf("/metrics with %q: %d %s", tok, code, body)
		}
	}
	if code, body := h.scrape(token); code != http.StatusOK || !strings.Contains(body, "ferry_alerts_open 0") {
		t.Fatalf("/metrics with the token: %d %.200s", code, body)
	}
}

// The apps gauge keeps its label values bounded however many apps and versions nodes report.
func TestBoundApps(t *testing.T) {
	apps := map[overview.AppKey]int{}
	for a := range maxMetricApps + 5 {
		for v := range maxMetricVersions + 3 {
			apps[overview.AppKey{App: fmt.Sprintf("app%03d", a), Version: fmt.Sprintf("1.%d.0", v), State: api.AppStateRunning}] = 1 + v + a
		}
	}
	apps[overview.AppKey{App: "app104", Version: "", State: ""}] = 1000
	total := 0
	for _, n := range apps {
		total += n
	}
	got := boundApps(apps)
	names, versions, sum := map[string]bool{}, map[string]map[string]bool{}, 0
	for k, n := range got {
		names[k.App] = true
		if versions[k.App] == nil {
			versions[k.App] = map[string]bool{}
		}
		versions[k.App][k.Version] = true
		sum += n
	}
	if sum != total {
		t.Fatalf("bounded apps count %d nodes, want %d", sum, total)
	}
	if len(names) != maxMetricApps+1 || !names[otherLabel] || names["app000"] {
		t.Fatalf("%d app labels (other %v, the least reported kept %v)", len(names), names[otherLabel], names["app000"])
	}
	for app, vs := range versions {
		if len(vs) > maxMetricVersions+1 {
			t.Errorf("%s has %d version labels", app, len(vs))
		}
	}
	if got[overview.AppKey{App: "app104", Version: "none", State: "unknown"}] != 1000 {
		t.Errorf("an app not installed, in no state: %v", got)
	}
	if !versions["app104"]["1.12.0"] || versions["app104"]["1.0.0"] || !versions["app104"][otherLabel] {
		t.Errorf("app104 keeps versions %v: want the most run, the rest as %s", versions["app104"], otherLabel)
	}
}

// Two replicas over one store report the same fleet, whichever replica the agents talk to;
// the agent connections are each replica's own.
func TestReplicasReportTheSameFleet(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ClusterKey: filepath.Join(t.TempDir(), "cluster.key"), Store: st}
	a := start(t, cfg)
	cfg.Store = follower{st}
	b := start(t, cfg)
	b.admin = b.client(a.srv.AdminToken)
	a.site("ams", 1)
	a.site("fra", 2)
	tok := a.enrollToken("ams", 2)
	a1, _ := a.runAgent("a1", tok, "")
	a2, _ := a.runAgent("a2", tok, "")
	f1, _ := b.runAgent("f1", a.enrollToken("fra", 1), "")
	for _, ag := range []*agent.Agent{a1, a2, f1} {
		waitGeneration(t, ag, 1)
	}
	fleet := func(text string) map[string]float64 {
		out := map[string]float64{}
		for series, v := range samples(t, text) {
			if strings.HasPrefix(series, "ferry_nodes") || strings.HasPrefix(series, "ferry_sites") || strings.HasPrefix(series, "ferry_apps") {
				out[series] = v
			}
		}
		return out
	}
	textA, textB := scrapeOK(a), scrapeOK(b)
	fa, fb := fleet(textA), fleet(textB)
	if fa[`ferry_nodes{site="ams",status="up"}`] != 2 || fa[`ferry_nodes{site="fra",status="up"}`] != 1 || !maps.Equal(fa, fb) {
		t.Fatalf("replica a reports %v\nreplica b %v", fa, fb)
	}
	if ca, cb := samples(t, textA)["ferry_agent_connections"], samples(t, textB)["ferry_agent_connections"]; ca != 2 || cb != 1 {
		t.Fatalf("agent connections: a %v, b %v; want each replica's own, 2 and 1", ca, cb)
	}
}
