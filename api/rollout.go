package api

import (
	"strconv"
	"time"
)

// Rollout event types. Their subject is the rollout, "rollout/ID".
const (
	EventRolloutStarted  = "rollout.started"  // RolloutStarted
	EventRolloutState    = "rollout.state"    // RolloutStateChanged
	EventRolloutWave     = "rollout.wave"     // RolloutWaveChanged
	EventRolloutNode     = "rollout.node"     // RolloutNodeChanged
	EventRolloutApproved = "rollout.approved" // RolloutApproved
	EventRolloutAcked    = "rollout.acked"    // RolloutAcked
	EventRolloutReported = "rollout.reported" // RolloutReported
	EventRolloutNotify   = "rollout.notify"   // RolloutNotify
)

// RolloutSubject is the subject of a rollout's events.
func RolloutSubject(id int64) string { return "rollout/" + strconv.FormatInt(id, 10) }

// RolloutStarted is the payload of rollout.started.
type RolloutStarted struct {
	ID      int64       `json:"id"`
	Release string      `json:"release"`
	Policy  string      `json:"policy"`
	Waves   []WaveNodes `json:"waves"`
	// Replaced names the target nodes whose assignment of the app the rollout took over: a
	// pin or a channel set by ferry deploy.
	Replaced []string `json:"replaced,omitempty"`
}

// WaveNodes is a wave and how many nodes it takes.
type WaveNodes struct {
	Name  string `json:"name"`
	Nodes int    `json:"nodes"`
}

// RolloutStateChanged is the payload of rollout.state.
type RolloutStateChanged struct {
	ID     int64  `json:"id"`
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// RolloutWaveChanged is the payload of rollout.wave.
type RolloutWaveChanged struct {
	ID    int64  `json:"id"`
	Wave  string `json:"wave"`
	State string `json:"state"` // awaiting_approval, started, healthy, done, site_missed_ack
	Site  string `json:"site,omitempty"`
}

// RolloutNodeChanged is the payload of rollout.node: a node of the rollout is done, failed or
// unreachable.
type RolloutNodeChanged struct {
	ID     int64  `json:"id"`
	Node   string `json:"node"`
	Site   string `json:"site"`
	Wave   string `json:"wave"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// RolloutApproved is the payload of rollout.approved.
type RolloutApproved struct {
	ID   int64  `json:"id"`
	Wave string `json:"wave"`
}

// RolloutAcked is the payload of rollout.acked.
type RolloutAcked struct {
	ID   int64  `json:"id"`
	Wave string `json:"wave"`
	Site string `json:"site"`
}

// RolloutReported is the payload of rollout.reported.
type RolloutReported struct {
	ID   int64  `json:"id"`
	Wave string `json:"wave"`
	Site string `json:"site"`
	Good bool   `json:"good"`
	Text string `json:"text"`
}

// RolloutNotify is the payload of rollout.notify: sites to ask, remind or escalate to, with the
// contacts the sites gave.
type RolloutNotify struct {
	ID       int64    `json:"id"`
	Wave     string   `json:"wave"`
	Kind     string   `json:"kind"` // ack_request, ack_remind, ack_escalate, feedback, feedback_remind
	Sites    []string `json:"sites"`
	Contacts []string `json:"contacts,omitempty"`
}

// Rollout is a rollout as operators see it.
type Rollout struct {
	ID      int64  `json:"id"`
	Release string `json:"release"` // app@version
	App     string `json:"app"`
	Version string `json:"version"`
	Policy  string `json:"policy"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	// Wave is the wave in hand.
	Wave      string        `json:"wave"`
	Waves     []RolloutWave `json:"waves"`
	Attempt   int64         `json:"attempt,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	CreatedBy string        `json:"created_by"`
	UpdatedAt time.Time     `json:"updated_at"`
	// NextStep is when the rollout next acts by itself (a soak ends, a deadline passes).
	NextStep *time.Time `json:"next_step,omitempty"`
	// Nodes lists the nodes that need a look: failed, unreachable, skipped, moving or going back.
	Nodes []RolloutNode `json:"nodes,omitempty"`
	// LastEvent is the newest event of the log when the rollout was read: following the log
	// from there misses none of the rollout's later changes.
	LastEvent int64 `json:"last_event,omitempty"`
}

// RolloutWave is one wave of a rollout.
type RolloutWave struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Nodes       int    `json:"nodes"`
	Done        int    `json:"done"`
	Failed      int    `json:"failed"`
	Unreachable int    `json:"unreachable"`
	Moving      int    `json:"moving"`
	Skipped     int    `json:"skipped,omitempty"`
	// Approvals is how many approvals the wave needs; Approved who gave theirs.
	Approvals int        `json:"approvals,omitempty"`
	Approved  []string   `json:"approved,omitempty"`
	Acks      []SiteAck  `json:"acks,omitempty"`
	Reports   []SiteNote `json:"reports,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Healthy   *time.Time `json:"healthy,omitempty"`
	// Until is when a healthy wave's soak and feedback window end.
	Until *time.Time `json:"until,omitempty"`
}

// SiteAck is a site's acknowledgement of a wave.
type SiteAck struct {
	Site   string     `json:"site"`
	Acked  *time.Time `json:"acked,omitempty"`
	By     string     `json:"by,omitempty"`
	Missed bool       `json:"missed,omitempty"`
}

// SiteNote is a site's feedback on a wave.
type SiteNote struct {
	Site string    `json:"site"`
	Good bool      `json:"good"`
	Text string    `json:"text"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// RolloutNode is a node of a rollout that needs a look.
type RolloutNode struct {
	Name   string    `json:"name"`
	Site   string    `json:"site"`
	Wave   string    `json:"wave"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// RolloutStart asks for a rollout (POST /v1/rollouts) or its plan (POST /v1/rollouts/plan).
type RolloutStart struct {
	App     string `json:"app"`
	Version string `json:"version"`
	// Policy names a built-in policy; PolicyYAML is a policy file's text. Neither: the release
	// class's default.
	Policy     string `json:"policy,omitempty"`
	PolicyYAML string `json:"policy_yaml,omitempty"`
	Selector   string `json:"selector,omitempty"`
	// Set overrides durations and limits of the policy: "WAVE.FIELD=VALUE", "*" for every wave
	// ("pilot.soak=2d", "*.max_parallel=10%").
	Set []string `json:"set,omitempty"`
}

// RolloutPlan is what a rollout would do, without doing it.
type RolloutPlan struct {
	Release string     `json:"release"`
	Policy  string     `json:"policy"`
	Waves   []PlanWave `json:"waves"`
}

// PlanWave is one wave of a plan: its nodes by site, how many already run the release, and
// when it would end at the earliest if nothing failed.
type PlanWave struct {
	Name   string         `json:"name"`
	Nodes  int            `json:"nodes"`
	Sites  map[string]int `json:"sites"`
	Change int            `json:"change"` // nodes that do not run the release yet
	// Gates are what the wave waits for besides its nodes: approvals, acknowledgements.
	Gates []string `json:"gates,omitempty"`
	// Estimate is how long the wave takes at the least once it starts: a min_healthy_time for
	// each window of max_parallel nodes to change, then its soak or feedback window.
	Estimate Duration `json:"estimate"`
}

// RolloutAction is an operator's change to a rollout (POST /v1/rollouts/{id}/{action}).
type RolloutAction struct {
	Rollback bool   `json:"rollback,omitempty"` // abort --rollback
	Site     string `json:"site,omitempty"`     // ack, report
	Good     bool   `json:"good,omitempty"`     // report
	Text     string `json:"text,omitempty"`     // report, abort and rollback reason
}
