package rollout

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/labels"
	"pgregory.net/rapid"
)

// fleet makes targets: for each "SITE:TIER:N[:k=v,...]", N nodes SITE-1… at that site, with
// the labels a selector sees (site, tier and the site's labels).
func fleet(t testing.TB, specs ...string) []Target {
	t.Helper()
	var ts []Target
	for _, s := range specs {
		f := strings.SplitN(s, ":", 4)
		n, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= n; i++ {
			l := labels.Set{labels.KeySite: f[0], labels.KeyTier: f[1]}
			if len(f) == 4 {
				extra, err := labels.ParseSet(f[3])
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range extra {
					l[k] = v
				}
			}
			ts = append(ts, Target{Name: fmt.Sprintf("%s-%02d", f[0], i), Site: f[0], Labels: l, From: "1.0.0"})
		}
	}
	return ts
}

// smallFleet is the fleet the fuzz tests resolve what they accept against.
func smallFleet(t testing.TB) []Target {
	return fleet(t, "ams:1:3", "bcn:2:4:role=web", "cdg:3:2:pilot=breaking")
}

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func names(ns []PlanNode) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, " ")
}

func TestResolve(t *testing.T) {
	p := mustParse(t, careful)
	ts := fleet(t, "ams:1:4", "bcn:2:8", "cdg:2:4")
	plan, err := p.Resolve(ts, Defaults{MinHealthyTime: 20 * time.Second, HealthyDeadline: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p, ts, plan)
	got := []string{}
	for _, w := range plan.Waves {
		got = append(got, w.Name+": "+names(w.Nodes))
	}
	want := []string{
		"pilot: ams-01 ams-02 ams-03 ams-04",
		// 12.5% of 16 is 2: one of each of the two largest sites left.
		"early: bcn-01 cdg-01",
		"rest: bcn-02 cdg-02 bcn-03 cdg-03 bcn-04 cdg-04 bcn-05 bcn-06 bcn-07 bcn-08",
	}
	if !slices.Equal(got, want) {
		t.Errorf("waves\n got %q\nwant %q", got, want)
	}
	pilot, early, rest := plan.Waves[0], plan.Waves[1], plan.Waves[2]
	if pilot.MaxParallel != 1 || pilot.FailureThreshold != 1 || pilot.MinHealthyTime != 10*time.Second || pilot.HealthyDeadline != 2*time.Minute || pilot.MaxUnavailablePerSite != nil {
		t.Errorf("pilot %+v", pilot)
	}
	if pilot.UnreachableDeadline != DefaultUnreachableDeadline {
		t.Errorf("pilot unreachable deadline %v", pilot.UnreachableDeadline)
	}
	wantEarly := PlanWave{Name: "early", Nodes: early.Nodes, MaxParallel: 1, MaxUnavailablePerSite: map[string]int{"bcn": 1, "cdg": 1},
		MinHealthyTime: 20 * time.Second, HealthyDeadline: 10 * time.Minute, FailureThreshold: 1, Soak: 36 * time.Hour,
		Approvals: 2, ApprovalRole: "admin", Acks: &AckPlan{Deadline: 3 * 24 * time.Hour, Remind: 24 * time.Hour, Escalate: 48 * time.Hour},
		FeedbackWindow: 14 * 24 * time.Hour, FeedbackRemind: 3 * 24 * time.Hour, UnreachableDeadline: 30 * time.Minute}
	if !reflect.DeepEqual(early, wantEarly) {
		t.Errorf("early\n got %+v\nwant %+v", early, wantEarly)
	}
	if rest.MaxParallel != 3 || rest.FailureThreshold != 1 || rest.Soak != time.Hour || !reflect.DeepEqual(rest.MaxUnavailablePerSite, map[string]int{"bcn": 1, "cdg": 1}) {
		t.Errorf("rest %+v", rest)
	}
	if rest.Nodes[0].From != "1.0.0" || plan.OnFailure != OnFailureRollback || plan.Left != nil || plan.Skipped != nil {
		t.Errorf("plan %+v", plan)
	}
}

// A small share is spread over the sites: a 5% pilot of 200 nodes over 20 sites takes one
// node at each of the 10 largest of 20 sites.
func TestResolveSpreadsOverSites(t *testing.T) {
	var specs []string
	for i := 0; i < 20; i++ {
		specs = append(specs, fmt.Sprintf("s%02d:2:%d", i, 5+i%10))
	}
	ts := fleet(t, specs...)
	p := mustParse(t, "name: p\nwaves:\n  - {name: pilot, percent: 5}\n  - {name: rest}\n")
	plan, err := p.Resolve(ts, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p, ts, plan)
	sites := map[string]int{}
	for _, n := range plan.Waves[0].Nodes {
		sites[n.Site]++
	}
	if len(plan.Waves[0].Nodes) != 10 || len(sites) != 10 {
		t.Errorf("pilot %s: want 10 nodes (5%% of %d, rounded up) at 10 sites", names(plan.Waves[0].Nodes), len(ts))
	}
	for s := range sites {
		if n, _ := strconv.Atoi(s[1:]); n%10 < 5 {
			t.Errorf("pilot took %s, a small site, before larger ones", s)
		}
	}
	// Half of a fleet of a large and a small site is taken in proportion, after one of each.
	ts = fleet(t, "big:2:10", "small:2:2")
	p = mustParse(t, "name: p\nwaves:\n  - {name: half, percent: 50}\n  - {name: rest}\n")
	plan, err = p.Resolve(ts, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(plan.Waves[0].Nodes); got != "big-01 small-01 big-02 big-03 big-04 big-05" {
		t.Errorf("half: %s", got)
	}
}

func TestResolveRefuses(t *testing.T) {
	ts := fleet(t, "ams:1:2", "bcn:2:3")
	for _, c := range []struct{ name, yaml, want string }{
		{"selector matches nothing", "name: p\nwaves:\n  - name: a\n    selector: role=db\n  - name: b\n",
			`policy.yaml:4: waves[0].selector: "role=db" matches none of the 5 target nodes`},
		{"nodes left out", "name: p\nwaves:\n  - {name: a, selector: tier=1}\n",
			`policy.yaml:2: waves: 3 of the 5 target nodes are in no wave (bcn-01 at site bcn among them)`},
		{"share leaves nodes out", "name: p\nwaves:\n  - {name: a, percent: 50}\n",
			`policy.yaml:2: waves: 2 of the 5 target nodes are in no wave`},
		{"no wave takes a node", "name: p\nleftover: leave\nwaves:\n  - {name: a, selector: role=db, optional: true}\n",
			`policy.yaml:3: waves: no wave takes any of the 5 target nodes`},
		{"release deadline shorter", "name: p\nwaves:\n  - {name: a, min_healthy_time: 10m}\n",
			`policy.yaml:3: waves[0].min_healthy_time: min_healthy_time 10m is longer than healthy_deadline 5m (one of them the release's)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mustParse(t, c.yaml).Resolve(ts, Defaults{})
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("error\n got %v\nwant %s…", err, c.want)
			}
		})
	}
	p := mustParse(t, "name: p\nwaves: [{name: a}]\n")
	if _, err := p.Resolve(nil, Defaults{}); err == nil {
		t.Error("a plan of no targets")
	}
	if _, err := p.Resolve(append(ts, ts[0]), Defaults{}); err == nil || !strings.Contains(err.Error(), "ams-01 is given twice") {
		t.Errorf("a target given twice: %v", err)
	}
}

// What a wave may not take stays out, listed, when the policy says leftover: leave; a wave
// that takes nothing is skipped and named.
func TestResolveLeftoverAndSkipped(t *testing.T) {
	ts := fleet(t, "ams:2:2", "bcn:2:3")
	p := mustParse(t, "name: p\nleftover: leave\nwaves:\n  - {name: pilot, selector: tier=1, optional: true}\n  - {name: web, selector: site=ams}\n  - {name: again, selector: site=ams}\n")
	plan, err := p.Resolve(ts, Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p, ts, plan)
	if len(plan.Waves) != 1 || plan.Waves[0].Name != "web" || !slices.Equal(plan.Skipped, []string{"pilot", "again"}) || names(plan.Left) != "bcn-01 bcn-02 bcn-03" {
		t.Errorf("plan %+v", plan)
	}
}

// tb is what checkPlan needs of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// checkPlan checks what every plan keeps: each wave takes at least one node, the waves are
// disjoint, every node planned or left is a target and every target is one or the other,
// each node of a selector wave matches it, a share takes no more than it may, the limits are
// within bounds, and the waves follow the policy's order.
func checkPlan(t tb, p *Policy, targets []Target, plan Plan) {
	t.Helper()
	byName := map[string]Target{}
	for _, tg := range targets {
		byName[tg.Name] = tg
	}
	seen := map[string]string{}
	waves := map[string]Wave{}
	order := map[string]int{}
	for i, w := range p.Waves {
		waves[w.Name], order[w.Name] = w, i
	}
	last := -1
	for _, pw := range plan.Waves {
		w, ok := waves[pw.Name]
		if !ok {
			t.Fatalf("plan wave %s is not in the policy", pw.Name)
		}
		if order[pw.Name] <= last {
			t.Fatalf("plan wave %s out of the policy's order", pw.Name)
		}
		last = order[pw.Name]
		sel, _ := labels.ParseSelector(w.Selector)
		if len(pw.Nodes) == 0 {
			t.Fatalf("wave %s has no nodes", pw.Name)
		}
		atSite := map[string]int{}
		for _, n := range pw.Nodes {
			tg, ok := byName[n.Name]
			if !ok || tg.Site != n.Site || tg.From != n.From {
				t.Fatalf("wave %s: node %+v is not a target", pw.Name, n)
			}
			if other, dup := seen[n.Name]; dup {
				t.Fatalf("node %s is in waves %s and %s", n.Name, other, pw.Name)
			}
			seen[n.Name] = pw.Name
			if !sel.Matches(tg.Labels) {
				t.Fatalf("wave %s: node %s (%s) does not match %s", pw.Name, n.Name, tg.Labels, w.Selector)
			}
			atSite[n.Site]++
		}
		if w.Percent != 0 {
			matched := 0
			for _, tg := range targets {
				if sel.Matches(tg.Labels) {
					matched++
				}
			}
			if len(pw.Nodes) > w.Percent.Of(matched) {
				t.Fatalf("wave %s: %d nodes, more than %s of %d", pw.Name, len(pw.Nodes), w.Percent, matched)
			}
		}
		if pw.MaxParallel < 1 || pw.MaxParallel > len(pw.Nodes) || pw.FailureThreshold < 1 || pw.FailureThreshold > len(pw.Nodes) {
			t.Fatalf("wave %s: max_parallel %d, failure_threshold %d for %d nodes", pw.Name, pw.MaxParallel, pw.FailureThreshold, len(pw.Nodes))
		}
		if w.MaxUnavailablePerSite.zero() != (pw.MaxUnavailablePerSite == nil) {
			t.Fatalf("wave %s: max_unavailable_per_site %v resolved to %v", pw.Name, w.MaxUnavailablePerSite, pw.MaxUnavailablePerSite)
		}
		if pw.MaxUnavailablePerSite != nil {
			if len(pw.MaxUnavailablePerSite) != len(atSite) {
				t.Fatalf("wave %s: per-site limits %v for sites %v", pw.Name, pw.MaxUnavailablePerSite, atSite)
			}
			for s, n := range atSite {
				if v := pw.MaxUnavailablePerSite[s]; v < 1 || v > n {
					t.Fatalf("wave %s: site %s may have %d unavailable of its %d", pw.Name, s, v, n)
				}
			}
		}
		if pw.MinHealthyTime > pw.HealthyDeadline || pw.HealthyDeadline <= 0 {
			t.Fatalf("wave %s: min_healthy_time %v, healthy_deadline %v", pw.Name, pw.MinHealthyTime, pw.HealthyDeadline)
		}
	}
	for _, n := range plan.Left {
		if _, ok := byName[n.Name]; !ok {
			t.Fatalf("left node %s is not a target", n.Name)
		}
		if w, dup := seen[n.Name]; dup {
			t.Fatalf("node %s is left and in wave %s", n.Name, w)
		}
		seen[n.Name] = ""
	}
	if len(seen) != len(byName) {
		t.Fatalf("%d targets, %d planned or left", len(byName), len(seen))
	}
	if len(plan.Left) > 0 && p.Leftover != LeftoverLeave {
		t.Fatalf("%d nodes left by a policy that refuses leftovers", len(plan.Left))
	}
	if len(plan.Waves)+len(plan.Skipped) != len(p.Waves) {
		t.Fatalf("%d waves planned and %d skipped of %d", len(plan.Waves), len(plan.Skipped), len(p.Waves))
	}
}

// Resolve's properties over random fleets and policies: checkPlan's, a refusal only for the
// reasons documented, and the same plan for the same targets in any order.
func TestResolveProperties(t *testing.T) {
	selectors := []string{"", "", "tier=1", "role=web", "site=ams", "pilot=breaking", "role!=mesh", "tier=2,role=db", "gpu"}
	rapid.Check(t, func(rt *rapid.T) {
		var ts []Target
		for s, site := range rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"ams", "bcn", "cdg", "dub", "fra"}), 1, 5, rapid.ID[string]).Draw(rt, "sites") {
			tier := rapid.IntRange(1, 3).Draw(rt, "tier")
			optIn := rapid.Bool().Draw(rt, "opt-in")
			for i := range rapid.IntRange(0, 12).Draw(rt, "nodes") {
				l := labels.Set{labels.KeySite: site, labels.KeyTier: strconv.Itoa(tier)}
				if optIn {
					l["pilot"] = "breaking"
				}
				if role := rapid.SampledFrom([]string{"", "web", "db", "mesh"}).Draw(rt, "role"); role != "" {
					l["role"] = role
				}
				if rapid.Bool().Draw(rt, "gpu") {
					l["gpu"] = "yes"
				}
				ts = append(ts, Target{Name: fmt.Sprintf("n%d-%d", s, i), Site: site, Labels: l, From: "1"})
			}
		}
		p := &Policy{Name: "p", lines: map[string]int{}, source: "random"}
		if rapid.Bool().Draw(rt, "leave") {
			p.Leftover = LeftoverLeave
		}
		for i := range rapid.IntRange(1, 5).Draw(rt, "waves") {
			w := Wave{Name: fmt.Sprintf("w%d", i), Selector: rapid.SampledFrom(selectors).Draw(rt, "selector")}
			if rapid.Bool().Draw(rt, "share") {
				w.Percent = Percent(rapid.IntRange(1, 100_00).Draw(rt, "percent"))
			}
			w.Optional = w.Selector != "" && rapid.Bool().Draw(rt, "optional")
			limit := func(label string) Limit {
				switch rapid.IntRange(0, 2).Draw(rt, label) {
				case 0:
					return Limit{}
				case 1:
					return Limit{Count: rapid.IntRange(1, 20).Draw(rt, label+"-count")}
				}
				return Limit{Percent: Percent(rapid.IntRange(1, 100_00).Draw(rt, label+"-percent"))}
			}
			w.MaxParallel, w.MaxUnavailablePerSite, w.FailureThreshold = limit("max_parallel"), limit("max_unavailable"), limit("failure_threshold")
			p.Waves = append(p.Waves, w)
		}
		if err := p.validate(); err != nil {
			rt.Fatalf("a valid policy refused: %v", err)
		}
		plan, err := p.Resolve(ts, Defaults{})
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "matches none of") && !strings.Contains(msg, "are in no wave") && !strings.Contains(msg, "no wave takes") && !strings.Contains(msg, "no target nodes") {
				rt.Fatalf("refused for an undocumented reason: %v", err)
			}
			return
		}
		checkPlan(rt, p, ts, plan)
		shuffled := rapid.Permutation(ts).Draw(rt, "order")
		again, err := p.Resolve(shuffled, Defaults{})
		if err != nil || !reflect.DeepEqual(plan, again) {
			rt.Fatalf("the same targets in another order give another plan:\n%+v\n%+v (%v)", plan, again, err)
		}
	})
}
