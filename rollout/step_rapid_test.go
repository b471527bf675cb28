package rollout

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// genPlan draws a plan of 1–4 waves over up to 5 sites.
func genPlan(t *rapid.T) Plan {
	sites := []string{"ams", "fra", "ber", "lis", "osl"}
	var p Plan
	p.OnFailure = rapid.SampledFrom([]string{OnFailureRollback, OnFailurePause}).Draw(t, "on_failure")
	for i := range rapid.IntRange(1, 4).Draw(t, "waves") {
		w := PlanWave{
			Name:                fmt.Sprintf("w%d", i),
			MaxParallel:         rapid.IntRange(1, 4).Draw(t, "max_parallel"),
			FailureThreshold:    rapid.IntRange(1, 3).Draw(t, "failure_threshold"),
			HealthyDeadline:     time.Duration(rapid.IntRange(1, 30).Draw(t, "healthy_deadline")) * time.Minute,
			UnreachableDeadline: time.Duration(rapid.IntRange(1, 60).Draw(t, "unreachable_deadline")) * time.Minute,
			Soak:                time.Duration(rapid.IntRange(0, 120).Draw(t, "soak")) * time.Minute,
			Approvals:           rapid.IntRange(0, 1).Draw(t, "approvals"),
		}
		if rapid.Bool().Draw(t, "acks") {
			w.Acks = &AckPlan{Deadline: time.Hour, Remind: 20 * time.Minute, Escalate: 40 * time.Minute}
		}
		for j := range rapid.IntRange(1, 8).Draw(t, "nodes") {
			site := rapid.SampledFrom(sites).Draw(t, "site")
			from := rapid.SampledFrom([]string{"1.0", "1.0", ""}).Draw(t, "from")
			w.Nodes = append(w.Nodes, PlanNode{Name: fmt.Sprintf("n%d.%d", i, j), Site: site, From: from})
		}
		for _, site := range sites {
			if rapid.Bool().Draw(t, "site_limit") {
				if w.MaxUnavailablePerSite == nil {
					w.MaxUnavailablePerSite = map[string]int{}
				}
				w.MaxUnavailablePerSite[site] = rapid.IntRange(1, 2).Draw(t, "per_site")
			}
		}
		p.Waves = append(p.Waves, w)
	}
	return p
}

// The reconciler's promises, over random plans, fleets, failures, outages and operator actions:
// limits hold whenever it starts a node, no node outside the plan is touched, no node is moved
// twice in one attempt, no wave starts before its predecessor is done, the same inputs give the
// same result, a step taken again asks for nothing, and a rollback puts back exactly the nodes
// that moved.
func TestStepProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := genPlan(t)
		f := newFleet(p)
		wave := map[string]int{}
		site := map[string]string{}
		fromOf := map[string]string{}
		for i, w := range p.Waves {
			for _, n := range w.Nodes {
				wave[n.Name], site[n.Name], fromOf[n.Name] = i, n.Site, n.From
				f.nodes[n.Name].fails = rapid.IntRange(0, 9).Draw(t, "fails") == 0
				f.nodes[n.Name].up = rapid.IntRange(0, 9).Draw(t, "down") != 0
			}
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range wave {
				if !yield(n) {
					return
				}
			}
		})
		pr, now := Begin(p), t0
		movedInAttempt := map[string]int64{}
		everMoved := map[string]bool{}
		var wake time.Time
		for range 300 {
			switch rapid.IntRange(0, 9).Draw(t, "event") {
			case 0, 1, 2, 3:
				obs := f.observe()
				res := Step(p, "2.0", pr, obs, now)
				if again := Step(p, "2.0", pr, obs, now); !reflect.DeepEqual(res, again) {
					t.Fatalf("the same step gave two results")
				}
				if rest := Step(p, "2.0", res.Progress, obs, now); len(rest.Actions) != 0 {
					t.Fatalf("a step taken again asked for %+v\npre %+v\nres %+v\nobs %+v", rest.Actions, pr, res, obs)
				}
				check(t, p, pr, res, obs, wave, site, fromOf, movedInAttempt, everMoved)
				f.apply(res.Actions)
				pr, wake = res.Progress, res.Wake
			case 4, 5:
				f.tick("2.0")
			case 6:
				n := rapid.SampledFrom(names).Draw(t, "flip")
				f.nodes[n].up = !f.nodes[n].up
			case 7:
				if !wake.IsZero() && rapid.Bool().Draw(t, "to_wake") {
					now = wake
				} else {
					now = now.Add(time.Duration(rapid.IntRange(1, 90).Draw(t, "minutes")) * time.Minute)
				}
			case 8:
				pr = operate(t, p, pr, now)
			case 9:
				// Acknowledge for a random site of the wave in hand.
				s := rapid.SampledFrom([]string{"ams", "fra", "ber", "lis", "osl"}).Draw(t, "ack_site")
				if next, err := Ack(p, pr, s, "op", now); err == nil {
					pr = next
				}
			}
		}
	})
}

// operate takes a random operator action; refused ones change nothing.
func operate(t *rapid.T, p Plan, pr Progress, now time.Time) Progress {
	var next Progress
	var err error
	switch rapid.IntRange(0, 7).Draw(t, "op") {
	case 0:
		next, err = Pause(pr)
	case 1:
		next, err = Resume(pr)
	case 2:
		next, err = Abort(pr, rapid.Bool().Draw(t, "abort_rollback"), "op")
	case 3:
		next, err = Retry(pr)
	case 4:
		next, err = Rollback(pr, "op")
	case 5, 6:
		next, err = Approve(p, pr, rapid.SampledFrom([]string{"alice", "bob"}).Draw(t, "approver"))
	case 7:
		s := rapid.SampledFrom([]string{"ams", "fra", "ber", "lis", "osl"}).Draw(t, "report_site")
		next, err = Report(p, pr, s, rapid.Bool().Draw(t, "good"), "seen", "op", now)
	}
	if err != nil {
		return pr
	}
	return next
}

func check(t *rapid.T, p Plan, pre Progress, res Result, obs map[string]Observed, wave map[string]int, site, fromOf map[string]string, movedInAttempt map[string]int64, everMoved map[string]bool) {
	post := res.Progress
	unavailable, perSite := 0, map[string]int{}
	for name, np := range post.Nodes {
		if (np.State == NodeMoving || np.State == NodeReverting && !np.Quiet) && obs[name].Up {
			unavailable++
			perSite[site[name]]++
		}
	}
	for _, a := range res.Actions {
		if a.Kind != ActAssign {
			continue
		}
		for _, n := range a.Nodes {
			i, ok := wave[n]
			if !ok {
				t.Fatalf("node %s outside the plan was assigned %s", n, a.Version)
			}
			var limits PlanWave
			limited := false
			switch a.Version {
			case "2.0":
				if pre.State != StateRunning && pre.State != StateCompleted {
					t.Fatalf("%s moved by a rollout that was %s", n, pre.State)
				}
				if at, ok := movedInAttempt[n]; ok && at == post.Attempt {
					t.Fatalf("%s moved twice in attempt %d", n, at)
				}
				movedInAttempt[n], everMoved[n] = post.Attempt, true
				for j := range i {
					if post.Waves[j].State != WaveDone {
						t.Fatalf("%s of wave %d moved while wave %d is %s", n, i, j, post.Waves[j].State)
					}
				}
				limited = true
				g := post.Wave
				if st := post.Waves[g].State; st == WavePending || st == WaveApproval {
					g--
				}
				limits = p.Waves[g]
			case fromOf[n]:
				if !everMoved[n] {
					t.Fatalf("%s put back to %q though the rollout never moved it", n, a.Version)
				}
				limited = pre.Nodes[n].State == NodeDone && obs[n].Up // a node down is out of service anyway
				limits = p.strictest()
			default:
				t.Fatalf("%s assigned %q: neither the release nor its old one", n, a.Version)
			}
			if limited {
				if pw := limits; unavailable > pw.MaxParallel {
					t.Fatalf("%d nodes unavailable after %s started, max_parallel %d\npre %+v\npost %+v\nobs %+v", unavailable, n, pw.MaxParallel, pre.Nodes, post.Nodes, obs)
				} else if l, ok := pw.MaxUnavailablePerSite[site[n]]; ok && perSite[site[n]] > l {
					t.Fatalf("%d nodes of %s unavailable after %s started, limit %d", perSite[site[n]], site[n], n, l)
				}
			}
		}
	}
	if post.State == StateRolledBack && pre.State != StateRolledBack {
		for n := range everMoved {
			if np := post.Nodes[n]; np.State != NodeReverted && np.State != NodeRevertFailed {
				t.Fatalf("rolled back with %s %s", n, np.State)
			}
		}
		for n, np := range post.Nodes {
			if np.Moved != everMoved[n] {
				t.Fatalf("%s: moved %v, but the rollout assigned it: %v", n, np.Moved, everMoved[n])
			}
		}
	}
}
