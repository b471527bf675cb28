package rollout

import (
	"maps"
	"slices"
	"time"
)

// Rollout states. Only running and paused block a new rollout of the same app on the same nodes.
const (
	StateRunning     = "running"
	StatePaused      = "paused"
	StateHalted      = "halted"       // stopped at a failure, nodes left as they are, until retried
	StateRollingBack = "rolling_back" // putting back every node it moved
	StateRolledBack  = "rolled_back"
	StateCompleted   = "completed"
	StateAborted     = "aborted"
)

// Active reports whether a rollout in state s holds its nodes: no other rollout of the app may
// take them.
func Active(s string) bool { return s == StateRunning || s == StatePaused }

// Wave states.
const (
	WavePending  = "pending"
	WaveApproval = "awaiting_approval"
	WaveRunning  = "running"
	WaveSoaking  = "soaking" // every node healthy: soak and feedback window
	WaveDone     = "done"
)

// Node states within a rollout.
const (
	NodePending      = "pending"
	NodeMoving       = "moving" // assigned the release, not yet healthy
	NodeDone         = "done"
	NodeFailed       = "failed"
	NodeUnreachable  = "unreachable" // down when its turn came (or when judged); moved when it returns
	NodeSkipped      = "skipped"     // its site did not acknowledge the wave in time
	NodeReverting    = "reverting"
	NodeReverted     = "reverted"
	NodeRevertFailed = "revert_failed"
)

// Progress is where a rollout stands: the durable state the reconciler reads and writes. It is
// stored with the rollout after every step, in the same transaction as the assignments the step
// made, so a restart resumes exactly where it was.
type Progress struct {
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"` // why it halted, rolled back or was aborted
	// Wave is the index of the wave in hand: the earliest one not done.
	Wave  int            `json:"wave"`
	Waves []WaveProgress `json:"waves"`
	// Nodes is stored apart, a document per node (store.RolloutRecord.Nodes), so that a step
	// writes only the nodes it moved: see encode.
	Nodes map[string]NodeProgress `json:"-"`
	// Attempt grows at each retry; it goes with every assignment the rollout makes, so an agent
	// that gave up on the release tries it again.
	Attempt int64 `json:"attempt,omitempty"`
}

// WaveProgress is where one wave stands.
type WaveProgress struct {
	State     string    `json:"state"`
	Started   time.Time `json:"started,omitzero"`
	Healthy   time.Time `json:"healthy,omitzero"` // when its last node became healthy
	Approvals []string  `json:"approvals,omitempty"`
	// Acks and Reports are by site.
	Acks     map[string]SiteAck    `json:"acks,omitempty"`
	Reports  map[string]SiteReport `json:"reports,omitempty"`
	Reminded time.Time             `json:"reminded,omitzero"` // last feedback reminder
}

// SiteAck is a site's acknowledgement of a wave.
type SiteAck struct {
	Requested time.Time `json:"requested"`
	Acked     time.Time `json:"acked,omitzero"`
	By        string    `json:"by,omitempty"`
	Reminded  time.Time `json:"reminded,omitzero"`
	Escalated bool      `json:"escalated,omitempty"`
	Missed    bool      `json:"missed,omitempty"` // the deadline passed first
}

// SiteReport is a site's feedback on a wave.
type SiteReport struct {
	Good bool      `json:"good"`
	Text string    `json:"text"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// NodeProgress is where one node of the plan stands.
type NodeProgress struct {
	Wave  int       `json:"wave"`
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Moved says the rollout assigned the node its release: a rollback puts it back.
	Moved bool `json:"moved,omitempty"`
	// Quiet marks a revert that takes nothing out of service: the node was not serving the
	// release (it failed, was down or waited for a retry), so it counts against no limit.
	Quiet  bool   `json:"quiet,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Begin returns the progress of a rollout of plan that has not taken a step yet.
func Begin(p Plan) Progress {
	pr := Progress{State: StateRunning, Waves: make([]WaveProgress, len(p.Waves)), Nodes: map[string]NodeProgress{}}
	for i, w := range p.Waves {
		pr.Waves[i].State = WavePending
		for _, n := range w.Nodes {
			pr.Nodes[n.Name] = NodeProgress{Wave: i, State: NodePending}
		}
	}
	return pr
}

// Clone returns a deep copy of pr.
func (pr Progress) Clone() Progress {
	c := pr
	c.Nodes = maps.Clone(pr.Nodes)
	c.Waves = slices.Clone(pr.Waves)
	for i, w := range c.Waves {
		c.Waves[i].Approvals = slices.Clone(w.Approvals)
		c.Waves[i].Acks = maps.Clone(w.Acks)
		c.Waves[i].Reports = maps.Clone(w.Reports)
	}
	return c
}

// Count is how many of a wave's nodes stand where.
type Count struct {
	Nodes, Done, Failed, Unreachable, Moving, Skipped int
}

// Counts returns how many nodes of wave i stand where.
func (pr Progress) Counts(p Plan, i int) Count {
	c := Count{Nodes: len(p.Waves[i].Nodes)}
	for _, n := range p.Waves[i].Nodes {
		switch pr.Nodes[n.Name].State {
		case NodeDone:
			c.Done++
		case NodeFailed:
			c.Failed++
		case NodeUnreachable:
			c.Unreachable++
		case NodeMoving:
			c.Moving++
		case NodeSkipped:
			c.Skipped++
		}
	}
	return c
}
