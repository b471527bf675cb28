package api

// RolloutRehearse asks how a rollout would go on a simulated copy of today's fleet
// (POST /v1/rollouts/rehearse): the rollout as for a plan, and how the simulated fleet behaves.
type RolloutRehearse struct {
	RolloutStart
	// FailRate is the chance that the release fails on a node (its agent rolls it back),
	// OfflineRate the chance that a node is down throughout; each from 0 to 1.
	FailRate    float64 `json:"fail_rate,omitempty"`
	OfflineRate float64 `json:"offline_rate,omitempty"`
	// Seed picks which nodes fail and which are down: the same seed, the same rehearsal.
	Seed int64 `json:"seed,omitempty"`
	// InstallTime is how long a node takes to download, unpack and start the release before
	// its wave's min_healthy_time runs; 0 leaves it to the server's estimate.
	InstallTime Duration `json:"install_time,omitzero"`
}

// Outcomes of a rehearsal (RolloutRehearsal.Outcome): the rollout states it ends in, or
// unfinished when the rehearsal stopped first.
const (
	RehearsalCompleted  = "completed"
	RehearsalHalted     = "halted"      // stopped at a failure, its nodes left as they are
	RehearsalRolledBack = "rolled_back" // stopped at a failure and put back what it moved
	RehearsalUnfinished = "unfinished"
)

// RolloutRehearsal is how a rollout went on a simulated fleet, in simulated time; nothing in the
// real fleet changed. Times are offsets from the rollout's start.
type RolloutRehearsal struct {
	Release     string   `json:"release"`
	Policy      string   `json:"policy"`
	Seed        int64    `json:"seed"`
	FailRate    float64  `json:"fail_rate"`
	OfflineRate float64  `json:"offline_rate"`
	InstallTime Duration `json:"install_time"`
	// Failing and Offline count the nodes the draw made fail the release and the nodes down
	// throughout (those down today among them).
	Failing int `json:"failing"`
	Offline int `json:"offline"`

	Outcome string `json:"outcome"`
	// Took is when the rehearsal ended: the last wave done, the halt, or the last node back
	// after the rollback.
	Took     Duration           `json:"took"`
	Waves    []RehearsedWave    `json:"waves"`
	Halt     *RehearsedHalt     `json:"halt,omitempty"`
	Rollback *RehearsedRollback `json:"rollback,omitempty"`
	// Assumed says what the rehearsal took for granted that people decide: approvals and
	// acknowledgements given at once, feedback windows with no bad report.
	Assumed []string `json:"assumed,omitempty"`
	// Skipped are the policy's waves that took no node; Left counts the target nodes no wave
	// takes.
	Skipped []string `json:"skipped,omitempty"`
	Left    int      `json:"left,omitempty"`
	// Note says why an unfinished rehearsal stopped.
	Note  string `json:"note,omitempty"`
	Steps int    `json:"steps"`
}

// RehearsedWave is one wave of a rehearsal: its nodes where they stood when the rollout ended or
// halted, and when it started, became healthy and was done (absent when it never did).
type RehearsedWave struct {
	Name        string    `json:"name"`
	Nodes       int       `json:"nodes"`
	Done        int       `json:"done"`
	Failed      int       `json:"failed"`
	Unreachable int       `json:"unreachable"`
	Started     *Duration `json:"started,omitempty"`
	Healthy     *Duration `json:"healthy,omitempty"`
	Finished    *Duration `json:"finished,omitempty"`
}

// RehearsedHalt is where a rehearsed rollout halted: the wave in hand, when, and why.
type RehearsedHalt struct {
	Wave   string   `json:"wave"`
	At     Duration `json:"at"`
	Reason string   `json:"reason"`
}

// RehearsedRollback is how a rehearsed rollback went: the nodes put back, those that did not go
// back, and how long it took from the halt.
type RehearsedRollback struct {
	Nodes  int      `json:"nodes"`
	Failed int      `json:"failed,omitempty"`
	Took   Duration `json:"took"`
}
