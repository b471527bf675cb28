package check

import "time"

// Defaults of a Schedule, as api.CheckSpec documents them.
const (
	DefaultInterval = time.Minute
	DefaultRetries  = 3
	// minRetryInterval is the shortest default retry interval: a check every few milliseconds
	// would only load the node.
	minRetryInterval = time.Second
)

// Schedule says when a check runs and how its results become states: a Nagios service's
// check_interval, retry_interval and max_check_attempts.
type Schedule struct {
	// Interval is the time between runs while the state is hard; 0 means DefaultInterval.
	Interval time.Duration
	// RetryInterval is the time between runs while a non-OK state is soft; 0 means a quarter
	// of Interval, at least a second.
	RetryInterval time.Duration
	// Retries is max_check_attempts: how many runs in a row a non-OK state must hold to become
	// hard; 0 means DefaultRetries, 1 makes every state hard at once.
	Retries int
}

// WithDefaults fills in what s leaves out.
func (s Schedule) WithDefaults() Schedule {
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.RetryInterval <= 0 {
		s.RetryInterval = max(s.Interval/4, min(s.Interval, minRetryInterval))
	}
	if s.Retries <= 0 {
		s.Retries = DefaultRetries
	}
	return s
}

// Status is where a check stands after a run, as Nagios keeps a service's state.
type Status struct {
	State State
	// Hard says the state has held Retries runs in a row; OK is always hard.
	Hard bool
	// Attempt is current_attempt: which run of Retries a soft state has reached; Retries for a
	// hard problem, 1 for OK.
	Attempt int
	// Flapping is set while the check changes state too often to alert on.
	Flapping bool
	// PercentChange is the weighted percent state change over the last FlapHistory results
	// that flap detection decides on.
	PercentChange float64
}

// Change says how one result moved a check.
type Change struct {
	// State, Hard and Flapping are set when the state, its hardness or the flapping changed;
	// all three are set for a check's first result.
	State, Hard, Flapping bool
	// HardState is set when the hard state changed (what Nagios alerts on): a problem became
	// hard, a hard problem changed to another, or a hard problem recovered. A recovery from a
	// soft problem is not one.
	HardState bool
}

// Any tells whether the result changed anything worth telling at once.
func (c Change) Any() bool { return c.State || c.Hard || c.Flapping }

// Flap detection, as Nagios Core does it (base/flapping.c): the last FlapHistory recorded
// states, the changes between them weighted from FlapLowWeight (oldest) to FlapHighWeight
// (newest); flapping starts when the weighted percent change reaches FlapHigh and stops when
// it falls to FlapLow, and between the two the check stays as it was.
const (
	FlapHistory    = 21
	FlapLow        = 20.0
	FlapHigh       = 30.0
	FlapLowWeight  = 0.75
	FlapHighWeight = 1.25
)

// Tracker keeps one check's Nagios state across its runs: soft and hard states, attempts, the
// next run's delay and flap detection. It starts, as a Nagios service does, in a hard OK state
// with a history of OK results. It is not safe for concurrent use.
type Tracker struct {
	sched    Schedule
	st       Status
	lastHard State
	observed bool
	// history is a ring of the last FlapHistory recorded states; next is its oldest entry.
	history [FlapHistory]State
	next    int
}

// NewTracker returns a tracker for a check run on s (defaults filled in).
func NewTracker(s Schedule) *Tracker {
	return &Tracker{sched: s.WithDefaults(), st: Status{State: OK, Hard: true, Attempt: 1}}
}

// Status is the check's status after the last result.
func (t *Tracker) Status() Status { return t.st }

// Observe takes one run's state and returns the check's new status and what changed.
//
// The rules are Nagios Core's for services (handle_async_service_check_result):
//   - OK is always hard, with attempt 1. An OK after a hard problem is a hard recovery; after a
//     soft one, a soft recovery (Change.HardState unset: nothing was alerted, nothing recovers).
//     Nagios shows a soft recovery as "OK SOFT" for that one result; Ferry's contract says OK
//     is always hard, as Nagios's own state is once the result has been handled.
//   - A problem after a hard OK is soft, attempt 1. Each further problem result counts one
//     more attempt, whether the problem state stays or changes (WARNING to CRITICAL), and the
//     state becomes hard at attempt Retries.
//   - A hard problem that changes to another problem state is a hard change at once.
//
// Only hard states (OK included) enter the flap history: soft problems are retries, not
// changes, as Nagios records them.
func (t *Tracker) Observe(s State) (Status, Change) {
	prev, first := t.st, !t.observed
	t.observed = true
	if s == OK {
		t.st.State, t.st.Hard, t.st.Attempt = OK, true, 1
	} else {
		if !t.st.Hard && t.st.Attempt < t.sched.Retries {
			t.st.Attempt++
		}
		t.st.State = s
		t.st.Hard = t.st.Attempt >= t.sched.Retries
	}
	var c Change
	if t.st.Hard {
		c.HardState = t.st.State != t.lastHard
		t.lastHard = t.st.State
		t.history[t.next] = t.st.State
		t.next = (t.next + 1) % FlapHistory
	}
	t.st.PercentChange = t.percentChange()
	switch {
	case t.st.PercentChange >= FlapHigh:
		t.st.Flapping = true
	case t.st.PercentChange <= FlapLow:
		t.st.Flapping = false
	}
	c.State = first || t.st.State != prev.State
	c.Hard = first || t.st.Hard != prev.Hard
	c.Flapping = first || t.st.Flapping != prev.Flapping
	return t.st, c
}

// percentChange weighs each change between consecutive entries of the history, oldest first,
// from FlapLowWeight to FlapHighWeight, as a percentage of the FlapHistory-1 possible changes.
func (t *Tracker) percentChange() float64 {
	changes := 0.0
	last := t.history[t.next]
	for x := 1; x < FlapHistory; x++ {
		cur := t.history[(t.next+x)%FlapHistory]
		if cur != last {
			changes += float64(x-1)*(FlapHighWeight-FlapLowWeight)/float64(FlapHistory-2) + FlapLowWeight
		}
		last = cur
	}
	return changes * 100 / float64(FlapHistory-1)
}

// Next is how long after the last run's start the next is due: RetryInterval while a problem
// is soft, Interval otherwise.
func (t *Tracker) Next() time.Duration {
	if !t.st.Hard {
		return t.sched.RetryInterval
	}
	return t.sched.Interval
}
