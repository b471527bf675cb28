// Package rollout moves a set of nodes to a release in waves: policies (which waves, with which
// limits and gates), the plan a policy resolves to against the fleet when a rollout starts, and
// the reconciler that, given the plan, what the nodes report and the time, says what to do next.
package rollout

import (
	"time"

	"github.com/ferryhq/ferry/labels"
)

// What a rollout does when a wave crosses its failure threshold (Plan.OnFailure).
const (
	OnFailureRollback = "rollback" // put back every node the rollout moved, then stop
	OnFailurePause    = "pause"    // stop where it is and wait for the operator
)

// Target is a node a rollout may take, as a policy sees it when the plan is made.
type Target struct {
	Name string
	Site string
	// Labels are the labels a selector sees on the node (its own, its site's, site and tier).
	Labels labels.Set
	// From is the version the node runs or is assigned when the plan is made, "" when none:
	// what a rollback puts back.
	From string
}

// Plan is a policy resolved against the fleet when a rollout starts: which nodes each wave takes
// and the limits and gates it keeps, all in plain numbers. It is stored with the rollout and
// never resolved again, so a wave's nodes never change under it.
type Plan struct {
	OnFailure string     `json:"on_failure"`
	Waves     []PlanWave `json:"waves"`
	// Skipped names the policy's waves that took no node (an optional pilot whose selector
	// matched none of the target, a wave whose nodes earlier waves took): they are not in Waves.
	Skipped []string `json:"skipped,omitempty"`
	// Left are the target nodes no wave takes, which a policy with leftover: leave keeps on
	// what they run; the rollout never touches them.
	Left []PlanNode `json:"left,omitempty"`
}

// PlanWave is one wave of a plan.
type PlanWave struct {
	Name  string     `json:"name"`
	Nodes []PlanNode `json:"nodes"`
	// MaxParallel is how many of the wave's nodes may be moving at once (≥ 1): a sliding
	// window, the next node starting as soon as one finishes.
	MaxParallel int `json:"max_parallel"`
	// MaxUnavailablePerSite is, per site, how many of its nodes may be between stop and
	// healthy at once (≥ 1); a site not named has no limit but MaxParallel.
	MaxUnavailablePerSite map[string]int `json:"max_unavailable_per_site,omitempty"`
	MinHealthyTime        time.Duration  `json:"min_healthy_time"`
	HealthyDeadline       time.Duration  `json:"healthy_deadline"`
	// FailureThreshold is how many failed nodes halt the wave (≥ 1).
	FailureThreshold int `json:"failure_threshold"`
	// Soak is how long to wait once every node of the wave is healthy.
	Soak time.Duration `json:"soak,omitempty"`
	// Approvals is how many distinct approvers with ApprovalRole must approve before the wave
	// starts; 0 needs none.
	Approvals    int    `json:"approvals,omitempty"`
	ApprovalRole string `json:"approval_role,omitempty"`
	// Acks, when set, asks each site of the wave to acknowledge before its nodes are touched.
	Acks *AckPlan `json:"acks,omitempty"`
	// FeedbackWindow is how long sites may report good or bad once the wave is healthy; a bad
	// report halts. FeedbackRemind is how often to remind the sites that have not reported.
	FeedbackWindow time.Duration `json:"feedback_window,omitempty"`
	FeedbackRemind time.Duration `json:"feedback_remind,omitempty"`
	// UnreachableDeadline is how long the wave waits for a node that is down when its turn
	// comes before it completes without it (the node is still moved when it returns).
	UnreachableDeadline time.Duration `json:"unreachable_deadline"`
}

// AckPlan is how sites acknowledge a wave: within Deadline of the request, reminded every
// Remind, escalated to the site's contacts after Escalate (each 0 when not wanted). A site that
// has not acknowledged by the deadline is left out of the wave and listed.
type AckPlan struct {
	Deadline time.Duration `json:"deadline"`
	Remind   time.Duration `json:"remind,omitempty"`
	Escalate time.Duration `json:"escalate,omitempty"`
}

// PlanNode is a node of a wave.
type PlanNode struct {
	Name string `json:"name"`
	Site string `json:"site"`
	From string `json:"from,omitempty"` // the version a rollback puts back; "" when none
}
