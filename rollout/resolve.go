package rollout

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
)

// Defaults are what a policy leaves to the release: its manifest's update block. A zero field
// is the manifest's own default.
type Defaults struct {
	MinHealthyTime  time.Duration
	HealthyDeadline time.Duration
}

// DefaultsOf takes the defaults from a release manifest's update block.
func DefaultsOf(u release.Update) Defaults {
	return Defaults{MinHealthyTime: time.Duration(u.MinHealthyTime), HealthyDeadline: time.Duration(u.HealthyDeadline)}
}

// Resolve makes the plan of a rollout of the policy to targets: the nodes of each wave and its
// limits and gates in plain numbers. The same policy, targets (in any order) and defaults
// always give the same plan.
//
// Each wave takes, of the targets no earlier wave took, those its selector matches (all when it
// has none), at most its percent of the targets the selector matches, rounded up. A share
// smaller than what is left is spread over the sites: first one node of each site, largest
// sites first, then the rest in proportion to what each site has left; within a site, nodes
// go in name order. A wave that takes no node is skipped (Plan.Skipped). A selector that
// matches none of the targets is refused, unless the wave is optional. Targets that no wave
// takes are refused, unless the policy says leftover: leave (Plan.Left).
//
// Limits resolve against the wave: max_parallel and failure_threshold against its nodes,
// max_unavailable_per_site against each site's targets; each is at least 1 and at most the
// number it counts in the wave.
func (p *Policy) Resolve(targets []Target, d Defaults) (Plan, error) {
	if len(targets) == 0 {
		return Plan{}, fmt.Errorf("no target nodes: a rollout needs at least one node to move")
	}
	if d.HealthyDeadline == 0 { // never 0 in a manifest: no defaults were given
		d.HealthyDeadline = release.DefaultHealthyDeadline
		if d.MinHealthyTime == 0 {
			d.MinHealthyTime = release.DefaultMinHealthyTime
		}
	}
	ts := slices.SortedFunc(slices.Values(targets), func(a, b Target) int { return cmp.Compare(a.Name, b.Name) })
	siteTotal := map[string]int{}
	for i, t := range ts {
		if i > 0 && ts[i-1].Name == t.Name {
			return Plan{}, fmt.Errorf("target node %s is given twice", t.Name)
		}
		siteTotal[t.Site]++
	}
	taken := map[string]bool{}
	plan := Plan{OnFailure: p.OnFailure}
	for i, w := range p.Waves {
		sel, err := labels.ParseSelector(w.Selector)
		if err != nil {
			return Plan{}, p.fail(wavePath(i, "selector"), "%v", err)
		}
		matched := 0
		var free []Target
		for _, t := range ts {
			if sel.Matches(t.Labels) {
				matched++
				if !taken[t.Name] {
					free = append(free, t)
				}
			}
		}
		if matched == 0 && !w.Optional {
			return Plan{}, p.fail(wavePath(i, "selector"), "%s matches none of the %d target nodes: correct it, label the sites or nodes it means (ferry site label SITE key=value), or make the wave optional: true",
				labels.Quote(w.Selector), len(ts))
		}
		want := len(free)
		if w.Percent != 0 {
			want = min(want, w.Percent.Of(matched))
		}
		nodes := spread(free, want)
		if len(nodes) == 0 {
			plan.Skipped = append(plan.Skipped, w.Name)
			continue
		}
		for _, n := range nodes {
			taken[n.Name] = true
		}
		pw, err := p.planWave(i, nodes, siteTotal, d)
		if err != nil {
			return Plan{}, err
		}
		plan.Waves = append(plan.Waves, pw)
	}
	for _, t := range ts {
		if !taken[t.Name] {
			plan.Left = append(plan.Left, PlanNode{Name: t.Name, Site: t.Site, From: t.From})
		}
	}
	switch {
	case len(plan.Waves) == 0:
		return Plan{}, p.fail("waves", "no wave takes any of the %d target nodes", len(ts))
	case len(plan.Left) > 0 && p.Leftover != LeftoverLeave:
		return Plan{}, p.fail("waves", "%d of the %d target nodes are in no wave (%s at site %s among them): end with a wave without a selector to take the rest, narrow the target, or set leftover: leave",
			len(plan.Left), len(ts), plan.Left[0].Name, plan.Left[0].Site)
	}
	return plan, nil
}

// planWave resolves wave i's limits and gates for its nodes.
func (p *Policy) planWave(i int, nodes []PlanNode, siteTotal map[string]int, d Defaults) (PlanWave, error) {
	w := p.Waves[i]
	pw := PlanWave{
		Name:                w.Name,
		Nodes:               nodes,
		MaxParallel:         w.MaxParallel.Of(len(nodes)),
		FailureThreshold:    w.FailureThreshold.Of(len(nodes)),
		MinHealthyTime:      d.MinHealthyTime,
		HealthyDeadline:     d.HealthyDeadline,
		Soak:                time.Duration(w.Soak),
		FeedbackWindow:      time.Duration(w.FeedbackWindow),
		FeedbackRemind:      time.Duration(w.FeedbackRemind),
		UnreachableDeadline: time.Duration(w.UnreachableDeadline),
	}
	if !w.MaxUnavailablePerSite.zero() {
		inWave := map[string]int{}
		for _, n := range nodes {
			inWave[n.Site]++
		}
		pw.MaxUnavailablePerSite = map[string]int{}
		for site, n := range inWave {
			l := w.MaxUnavailablePerSite
			v := l.Count
			if v == 0 {
				v = l.Percent.Of(siteTotal[site])
			}
			pw.MaxUnavailablePerSite[site] = max(1, min(v, n))
		}
	}
	if w.MinHealthyTime != nil {
		pw.MinHealthyTime = time.Duration(*w.MinHealthyTime)
	}
	if w.HealthyDeadline != nil {
		pw.HealthyDeadline = time.Duration(*w.HealthyDeadline)
	}
	if pw.MinHealthyTime > pw.HealthyDeadline {
		field := "min_healthy_time"
		if w.MinHealthyTime == nil {
			field = "healthy_deadline"
		}
		return PlanWave{}, p.fail(wavePath(i, field), "min_healthy_time %v is longer than healthy_deadline %v (one of them the release's): a node could never stay up long enough",
			Duration(pw.MinHealthyTime), Duration(pw.HealthyDeadline))
	}
	if a := w.Approval; a != nil {
		pw.Approvals, pw.ApprovalRole = a.Count, a.Role
	}
	if a := w.Acks; a != nil {
		pw.Acks = &AckPlan{Deadline: time.Duration(a.Deadline), Remind: time.Duration(a.Remind), Escalate: time.Duration(a.Escalate)}
	}
	return pw, nil
}

// spread picks want of the free nodes (sorted by name) across their sites: one of each site
// first, largest sites first, then the rest in proportion to what each site has left, largest
// remainders first. The nodes come back interleaved by site, in site order, so that a wave
// worked through in order moves several sites at once.
func spread(free []Target, want int) []PlanNode {
	bySite := map[string][]Target{}
	for _, t := range free {
		bySite[t.Site] = append(bySite[t.Site], t)
	}
	sites := make([]string, 0, len(bySite))
	for s := range bySite {
		sites = append(sites, s)
	}
	slices.SortFunc(sites, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(bySite[b]), len(bySite[a])), cmp.Compare(a, b))
	})
	count := map[string]int{}
	given := 0
	for _, s := range sites {
		if given == want {
			break
		}
		count[s] = 1
		given++
	}
	if rest := want - given; rest > 0 {
		left := len(free) - given
		type share struct {
			site string
			frac int // the remainder of the site's share, in 1/left
		}
		shares := make([]share, 0, len(sites))
		for _, s := range sites {
			l := len(bySite[s]) - count[s]
			count[s] += rest * l / left
			given += rest * l / left
			shares = append(shares, share{s, rest * l % left})
		}
		slices.SortStableFunc(shares, func(a, b share) int { return cmp.Compare(b.frac, a.frac) })
		for j := 0; given < want; j++ {
			count[shares[j].site]++
			given++
		}
	}
	slices.Sort(sites)
	nodes := make([]PlanNode, 0, want)
	for round := 0; len(nodes) < want; round++ {
		for _, s := range sites {
			if round < count[s] {
				t := bySite[s][round]
				nodes = append(nodes, PlanNode{Name: t.Name, Site: t.Site, From: t.From})
			}
		}
	}
	return nodes
}
