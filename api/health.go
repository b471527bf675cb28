package api

import "time"

// Events of checks and alerts.
const (
	EventCheckAdded    = "check.added"    // CheckAdded
	EventCheckRemoved  = "check.removed"  // CheckRemoved
	EventCheckState    = "check.state"    // CheckStateChanged
	EventCheckFlapping = "check.flapping" // CheckFlapping
	EventAlertRaised   = "alert.raised"   // AlertRaised
	EventAlertCleared  = "alert.cleared"  // AlertCleared
	EventAlertAcked    = "alert.acked"    // AlertAcked
)

// CheckAdded is the payload of check.added (subject: the check's name): the check, and the
// nodes whose desired state it joined (each got a new generation).
type CheckAdded struct {
	Check CheckSpec `json:"check"`
	Nodes []string  `json:"nodes"`
}

// CheckRemoved is the payload of check.removed (subject: the check's name): the nodes whose
// desired state it left.
type CheckRemoved struct {
	Nodes []string `json:"nodes"`
}

// CheckStateChanged is the payload of check.state (subject: the node): a check's hard state
// changed.
type CheckStateChanged struct {
	Node   string `json:"node"`
	Check  string `json:"check"`
	From   string `json:"from"`
	To     string `json:"to"`
	Output string `json:"output"`
}

// CheckFlapping is the payload of check.flapping (subject: the node): a check started
// (Flapping) or stopped flapping. A flapping check raises no alert.
type CheckFlapping struct {
	Node     string `json:"node"`
	Check    string `json:"check"`
	Flapping bool   `json:"flapping"`
	State    string `json:"state"`
}

// AlertRaised is the payload of alert.raised (subject: the node).
type AlertRaised struct {
	ID     int64  `json:"id"`
	Node   string `json:"node"`
	Check  string `json:"check"`
	State  string `json:"state"`
	Output string `json:"output"`
}

// AlertCleared is the payload of alert.cleared (subject: the node): the check is OK again, or
// it is gone (removed, or its node is).
type AlertCleared struct {
	ID    int64  `json:"id"`
	Node  string `json:"node"`
	Check string `json:"check"`
	// Reason is why the alert ended: "ok", or "removed" when the check or node went away.
	Reason string `json:"reason"`
}

// AlertAcked is the payload of alert.acked (subject: the node).
type AlertAcked struct {
	ID      int64  `json:"id"`
	Node    string `json:"node"`
	Check   string `json:"check"`
	Comment string `json:"comment,omitempty"`
}

// CheckListing is an operator check (or, with no selector, a manifest's check that agents
// report) with its latest result on each node that reports it, in `ferry check list`.
type CheckListing struct {
	CheckSpec
	Results []NodeCheck `json:"results"`
}

// NodeCheck is the latest result of a check on a node.
type NodeCheck struct {
	Node string `json:"node"`
	CheckResult
}

// CheckBucket is one bucket of a check's history on a node: the worst state of the results
// that fell into [Start, Start+Width), how many did, and the range of each perf value.
type CheckBucket struct {
	Start time.Time   `json:"start"`
	Width Duration    `json:"width"`
	Worst string      `json:"worst"`
	Count int         `json:"count"`
	Perf  []PerfStats `json:"perf,omitempty"`
}

// PerfStats summarises one perf label's values within a history bucket.
type PerfStats struct {
	Label string  `json:"label"`
	Min   float64 `json:"min"`
	Avg   float64 `json:"avg"`
	Max   float64 `json:"max"`
}

// Alert is raised when a check's hard state turns non-OK and cleared when it is OK again.
type Alert struct {
	ID      int64      `json:"id"`
	Node    string     `json:"node"`
	Check   string     `json:"check"`
	State   string     `json:"state"`
	Since   time.Time  `json:"since"`
	Output  string     `json:"output"`
	AckedBy string     `json:"acked_by"`
	AckedAt *time.Time `json:"acked_at,omitempty"`
	Comment string     `json:"comment,omitempty"`
	// ClearedAt is when the alert ended; nil while it is open.
	ClearedAt *time.Time `json:"cleared_at,omitempty"`
}

// AlertAck is the request to acknowledge an alert.
type AlertAck struct {
	Comment string `json:"comment,omitempty"`
}
