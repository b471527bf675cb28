package rollout

import (
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/fault"
)

// What operators do to a rollout. Each is pure: it checks the rollout may take the change and
// returns the new progress; the next Step acts on it. A refused change returns a fault error
// and pr unchanged.

// Pause stops a running rollout from starting more nodes; nodes already moving finish.
func Pause(pr Progress) (Progress, error) {
	if pr.State != StateRunning {
		return pr, fault.Conflict("rollout is %s: only a running rollout can be paused", pr.State)
	}
	pr = pr.Clone()
	pr.State = StatePaused
	return pr, nil
}

// Resume runs a paused rollout again.
func Resume(pr Progress) (Progress, error) {
	if pr.State != StatePaused {
		return pr, fault.Conflict("rollout is %s: only a paused rollout can be resumed (retry continues a halted or aborted one)", pr.State)
	}
	pr = pr.Clone()
	pr.State = StateRunning
	return pr, nil
}

// Abort stops a rollout for good, leaving its nodes as they are, or putting back those it moved
// when rollback is set.
func Abort(pr Progress, rollback bool, reason string) (Progress, error) {
	switch pr.State {
	case StateRunning, StatePaused, StateHalted:
	default:
		return pr, fault.Conflict("rollout is %s: only a running, paused or halted rollout can be aborted", pr.State)
	}
	pr = pr.Clone()
	pr.State, pr.Reason = StateAborted, reason
	if rollback {
		pr.State = StateRollingBack
	}
	return pr, nil
}

// Rollback puts back every node the rollout moved, from any state but a rollback.
func Rollback(pr Progress, reason string) (Progress, error) {
	if pr.State == StateRollingBack || pr.State == StateRolledBack {
		return pr, fault.Conflict("rollout is %s already", pr.State)
	}
	pr = pr.Clone()
	pr.State, pr.Reason = StateRollingBack, reason
	return pr, nil
}

// Retry continues a halted or aborted rollout from where it stopped: its failed nodes are tried
// again (Attempt grows, so their agents try the release again) and nodes left out for a missed
// acknowledgement wait for one again.
func Retry(pr Progress) (Progress, error) {
	if pr.State != StateHalted && pr.State != StateAborted {
		return pr, fault.Conflict("rollout is %s: only a halted or aborted rollout can be retried", pr.State)
	}
	pr = pr.Clone()
	pr.State, pr.Reason = StateRunning, ""
	pr.Attempt++
	for name, np := range pr.Nodes {
		if np.State == NodeFailed && np.Wave <= pr.Wave {
			pr.Nodes[name] = NodeProgress{Wave: np.Wave, State: NodePending, Moved: true}
		}
	}
	for i := range pr.Waves {
		// Bad reports halted it: the operator has read them and goes on.
		for site, r := range pr.Waves[i].Reports {
			if !r.Good {
				delete(pr.Waves[i].Reports, site)
			}
		}
	}
	return pr, nil
}

// Approve records who's approval of the wave awaiting one. An approver counts once.
func Approve(p Plan, pr Progress, who string) (Progress, error) {
	if pr.State != StateRunning && pr.State != StatePaused {
		return pr, fault.Conflict("rollout is %s: nothing to approve", pr.State)
	}
	i := pr.Wave
	if i >= len(pr.Waves) || pr.Waves[i].State != WaveApproval {
		return pr, fault.Conflict("no wave is awaiting approval")
	}
	if slices.Contains(pr.Waves[i].Approvals, who) {
		return pr, fault.Conflict("%s has approved wave %s already", who, p.Waves[i].Name)
	}
	pr = pr.Clone()
	pr.Waves[i].Approvals = append(pr.Waves[i].Approvals, who)
	return pr, nil
}

// Ack records site's acknowledgement of the wave in hand. A site that missed the deadline may
// still acknowledge while the wave runs: its nodes are taken up again.
func Ack(p Plan, pr Progress, site, who string, now time.Time) (Progress, error) {
	if pr.State != StateRunning && pr.State != StatePaused {
		return pr, fault.Conflict("rollout is %s: nothing to acknowledge", pr.State)
	}
	i := pr.Wave
	if i >= len(pr.Waves) || p.Waves[i].Acks == nil {
		return pr, fault.Conflict("wave %s asks for no acknowledgement", waveName(p, i))
	}
	a, ok := pr.Waves[i].Acks[site]
	if !ok {
		return pr, fault.Invalid("site %s has no node in wave %s, or the wave has not asked it yet", site, waveName(p, i))
	}
	if !a.Acked.IsZero() {
		return pr, fault.Conflict("site %s has acknowledged wave %s already", site, p.Waves[i].Name)
	}
	if pr.Waves[i].State != WaveRunning {
		return pr, fault.Conflict("wave %s is %s", p.Waves[i].Name, pr.Waves[i].State)
	}
	pr = pr.Clone()
	a.Acked, a.By, a.Missed = now, who, false
	pr.Waves[i].Acks[site] = a
	for _, n := range p.Waves[i].Nodes {
		if np := pr.Nodes[n.Name]; n.Site == site && np.State == NodeSkipped {
			pr.Nodes[n.Name] = NodeProgress{Wave: i, State: NodePending}
		}
	}
	return pr, nil
}

// Report records site's feedback on the latest wave it has nodes in that has started; a bad one
// halts the rollout at its next step.
func Report(p Plan, pr Progress, site string, good bool, text, who string, now time.Time) (Progress, error) {
	if pr.State != StateRunning && pr.State != StatePaused {
		return pr, fault.Conflict("rollout is %s: it takes no feedback", pr.State)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return pr, fault.Invalid("say what the site saw: the report text is empty")
	}
	for i := min(pr.Wave, len(p.Waves)-1); i >= 0; i-- {
		if pr.Waves[i].State == WavePending || pr.Waves[i].State == WaveApproval {
			continue
		}
		if !slices.ContainsFunc(p.Waves[i].Nodes, func(n PlanNode) bool { return n.Site == site }) {
			continue
		}
		pr = pr.Clone()
		if pr.Waves[i].Reports == nil {
			pr.Waves[i].Reports = map[string]SiteReport{}
		}
		pr.Waves[i].Reports[site] = SiteReport{Good: good, Text: text, By: who, At: now}
		return pr, nil
	}
	return pr, fault.Invalid("site %s has no node in a wave that has started", site)
}

func waveName(p Plan, i int) string {
	if i < len(p.Waves) {
		return p.Waves[i].Name
	}
	return "(none)"
}

// Halt stops a running or paused rollout as a failure does, for reason (its release was
// withdrawn): it rolls back what it moved or halts, as the plan's on_failure says.
func Halt(p Plan, pr Progress, reason string) Progress {
	if !Active(pr.State) {
		return pr
	}
	pr = pr.Clone()
	pr.Reason = reason
	pr.State = StateRollingBack
	if p.OnFailure == OnFailurePause {
		pr.State = StateHalted
	}
	return pr
}
