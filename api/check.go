package api

import "time"

// Check states, as Nagios names them. A check's state travels as one of these strings.
const (
	CheckOK       = "OK"
	CheckWarning  = "WARNING"
	CheckCritical = "CRITICAL"
	CheckUnknown  = "UNKNOWN"
)

// Bounds on what checks carry, enforced by the agent before it sends and by the server when it
// reads an agent's report.
const (
	// MaxCheckOutput bounds a result's one-line output, in bytes; longer output is cut.
	MaxCheckOutput = 1024
	// MaxCheckPerf bounds the perfdata items of one result; further items are dropped.
	MaxCheckPerf = 32
	// MaxCheckResults bounds the results one Sync frame carries; an agent with more keeps the
	// rest for the next frame.
	MaxCheckResults = 256
	// MaxNodeChecks bounds the operator checks one node is given.
	MaxNodeChecks = 64
)

// CheckSpec is a node-level check an operator sets with `ferry check add`. The server sends
// each node the checks whose selector matches it, in Desired.Checks. Exactly one of Exec, HTTP,
// TCP and Disk is set.
type CheckSpec struct {
	// Name is unique among operator checks: 1–63 of a-z, 0-9, '-', '_', '.', starting with a
	// letter or digit.
	Name     string `json:"name"`
	Selector string `json:"selector"`
	// Exec is a Nagios plugin's command line, run without a shell: exit 0/1/2/3 is
	// OK/WARNING/CRITICAL/UNKNOWN, the first line is the output, perfdata follows '|'.
	Exec []string `json:"exec,omitempty"`
	// HTTP is a URL; a 2xx answer within the timeout is OK, anything else CRITICAL.
	HTTP string `json:"http,omitempty"`
	// TCP is a host:port; a connection accepted within the timeout is OK.
	TCP string `json:"tcp,omitempty"`
	// Disk is a path whose file system's free space is checked against Warn and Crit.
	Disk string `json:"disk,omitempty"`
	// Warn and Crit are disk thresholds on free space: a percentage of the file system ("10%")
	// or a size ("5GiB", "500MB"). Free space at or below Crit is CRITICAL, else at or below
	// Warn WARNING. Defaults: 10% and 5%.
	Warn string `json:"warn,omitempty"`
	Crit string `json:"crit,omitempty"`
	// Interval is the time between checks while the state is hard (default 1m); RetryInterval
	// the time between checks while a non-OK state is soft (default Interval/4, at least 1s).
	Interval      Duration `json:"interval,omitempty"`
	RetryInterval Duration `json:"retry_interval,omitempty"`
	// Timeout bounds one run (default 10s); a run past it is UNKNOWN for exec checks and
	// CRITICAL for the others, as Nagios does.
	Timeout Duration `json:"timeout,omitempty"`
	// Retries is Nagios's max_check_attempts: a non-OK state becomes hard once it has held this
	// many runs in a row (default 3; 1 makes every state hard at once).
	Retries   int        `json:"retries,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

// CheckResult is one run of a check, as an agent reports it in Sync.Checks. The agent runs its
// operator checks and its running apps' manifest checks on their intervals and keeps Nagios's
// soft and hard states and flap detection itself; the server keeps the latest result of each
// (node, check), a bounded, downsampled history, and raises alerts on hard state changes.
type CheckResult struct {
	// Check names the check: an operator check's name, or "APP/NAME" for a manifest's check.
	Check string `json:"check"`
	// App is set for a manifest's check.
	App string `json:"app,omitempty"`
	// State is OK, WARNING, CRITICAL or UNKNOWN.
	State string `json:"state"`
	// Hard says the state has held Retries runs in a row (an OK state is always hard); Attempt
	// is which run of Retries a soft state has reached.
	Hard    bool `json:"hard"`
	Attempt int  `json:"attempt"`
	// Flapping is set while the check changes state too often to alert on (Nagios's flap
	// detection: weighted percent state change over the last 21 runs, starting above 30% and
	// ending below 20%).
	Flapping bool `json:"flapping,omitempty"`
	// Output is the plugin's first line (or the reason an HTTP, TCP or disk check failed), at
	// most MaxCheckOutput bytes.
	Output string      `json:"output"`
	Perf   []CheckPerf `json:"perf,omitempty"`
	// Time is when the run started; Duration how long it took.
	Time     time.Time `json:"time"`
	Duration Duration  `json:"duration"`
}

// CheckPerf is one perfdata item of a result: a labelled number with its unit, and the warn and
// crit thresholds, min and max when the plugin gave them.
type CheckPerf struct {
	Label string   `json:"label"`
	Value float64  `json:"value"`
	UOM   string   `json:"uom,omitempty"`
	Warn  string   `json:"warn,omitempty"` // the range as the plugin wrote it, e.g. "10:" or "@5:10"
	Crit  string   `json:"crit,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Max   *float64 `json:"max,omitempty"`
}
