package check

import (
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The state-type example of the Nagios documentation ("State Types"), max_check_attempts 3,
// and the cases around it.
func TestTrackerStates(t *testing.T) {
	type step struct {
		in      State
		state   State
		hard    bool
		attempt int
		change  Change
	}
	all := Change{State: true, Hard: true, Flapping: true}
	cases := []struct {
		name    string
		retries int
		steps   []step
	}{
		{"nagios documentation", 3, []step{
			{OK, OK, true, 1, all},
			{Warning, Warning, false, 1, Change{State: true, Hard: true}},
			{Critical, Critical, false, 2, Change{State: true}},
			{Warning, Warning, true, 3, Change{State: true, Hard: true, HardState: true}},
			{Warning, Warning, true, 3, Change{}},
			{OK, OK, true, 1, Change{State: true, HardState: true}}, // hard recovery
			{OK, OK, true, 1, Change{}},
			{Unknown, Unknown, false, 1, Change{State: true, Hard: true}},
			{OK, OK, true, 1, Change{State: true, Hard: true}}, // soft recovery: no hard change
			{OK, OK, true, 1, Change{}},
		}},
		{"first result a problem", 2, []step{
			{Critical, Critical, false, 1, all},
			{Critical, Critical, true, 2, Change{Hard: true, HardState: true}},
			{Critical, Critical, true, 2, Change{}},
		}},
		{"hard problems change hard at once", 3, []step{
			{Critical, Critical, false, 1, all},
			{Critical, Critical, false, 2, Change{}},
			{Critical, Critical, true, 3, Change{Hard: true, HardState: true}},
			{Warning, Warning, true, 3, Change{State: true, HardState: true}},
			{Unknown, Unknown, true, 3, Change{State: true, HardState: true}},
			{OK, OK, true, 1, Change{State: true, HardState: true}},
			{Warning, Warning, false, 1, Change{State: true, Hard: true}},
		}},
		{"one retry makes every state hard", 1, []step{
			{Warning, Warning, true, 1, Change{State: true, Hard: true, Flapping: true, HardState: true}},
			{Critical, Critical, true, 1, Change{State: true, HardState: true}},
			{OK, OK, true, 1, Change{State: true, HardState: true}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := NewTracker(Schedule{Interval: time.Minute, RetryInterval: 10 * time.Second, Retries: c.retries})
			for i, s := range c.steps {
				st, ch := tr.Observe(s.in)
				if st.State != s.state || st.Hard != s.hard || st.Attempt != s.attempt || ch != s.change {
					t.Fatalf("result %d (%v): got %v hard=%v attempt %d %+v, want %v hard=%v attempt %d %+v",
						i+1, s.in, st.State, st.Hard, st.Attempt, ch, s.state, s.hard, s.attempt, s.change)
				}
				wantNext := time.Minute
				if !s.hard {
					wantNext = 10 * time.Second
				}
				if tr.Next() != wantNext {
					t.Fatalf("result %d: next run in %v, want %v", i+1, tr.Next(), wantNext)
				}
			}
		})
	}
}

func TestScheduleDefaults(t *testing.T) {
	cases := []struct{ in, want Schedule }{
		{Schedule{}, Schedule{Interval: time.Minute, RetryInterval: 15 * time.Second, Retries: 3}},
		{Schedule{Interval: 2 * time.Second}, Schedule{Interval: 2 * time.Second, RetryInterval: time.Second, Retries: 3}},
		{Schedule{Interval: 200 * time.Millisecond, Retries: 1}, Schedule{Interval: 200 * time.Millisecond, RetryInterval: 200 * time.Millisecond, Retries: 1}},
		{Schedule{Interval: time.Hour, RetryInterval: time.Minute, Retries: 5}, Schedule{Interval: time.Hour, RetryInterval: time.Minute, Retries: 5}},
	}
	for _, c := range cases {
		if got := c.in.WithDefaults(); got != c.want {
			t.Errorf("%+v: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

// weight is the weight Nagios gives the change into the k-th entry of a history (k from 1, the
// second-oldest, to FlapHistory-1, the newest).
func weight(k int) float64 { return 0.75 + float64(k-1)*0.5/19 }

func TestFlapDetection(t *testing.T) {
	tr := NewTracker(Schedule{Retries: 1})
	// Hard results alternating from OK: each adds a change at the newest end of the history.
	var st Status
	var ch Change
	states := []State{Critical, OK}
	started := 0
	for i := 0; ; i++ {
		st, ch = tr.Observe(states[i%2])
		// i+1 changes, at entries 20, 19, ... of the history.
		want := 0.0
		for k := 0; k <= i && k < FlapHistory-1; k++ {
			want += weight(FlapHistory - 1 - k)
		}
		want = want * 100 / 20
		if math.Abs(st.PercentChange-want) > 1e-9 {
			t.Fatalf("after %d changes: %.4f%%, want %.4f%%", i+1, st.PercentChange, want)
		}
		if st.Flapping {
			started = i + 1
			break
		}
		if i > FlapHistory {
			t.Fatal("alternating states never started flapping")
		}
	}
	// 1.25+1.224+1.197+1.171+1.145 = 5.99 → 29.9%; the sixth change passes 30%.
	if started != 6 || !ch.Flapping || ch.State != true {
		t.Fatalf("flapping started after %d changes (%+v), want 6", started, ch)
	}
	// Steady OK: the changes age and leave; flapping stops once the percentage is at most 20.
	for i := 0; ; i++ {
		prev := st.PercentChange
		st, ch = tr.Observe(OK)
		if !st.Flapping {
			if st.PercentChange > FlapLow || prev <= FlapLow || !ch.Flapping {
				t.Fatalf("flapping stopped at %.2f%% (before: %.2f%%), %+v", st.PercentChange, prev, ch)
			}
			break
		}
		if st.PercentChange <= FlapLow {
			t.Fatalf("still flapping at %.2f%%", st.PercentChange)
		}
		if i > FlapHistory {
			t.Fatal("never stopped flapping")
		}
	}
}

// Soft problems are retries, not changes: a check that fails once in a while with Retries 3
// never flaps, however often it does.
func TestSoftProblemsDoNotFlap(t *testing.T) {
	tr := NewTracker(Schedule{Retries: 3})
	for i := 0; i < 100; i++ {
		s := OK
		if i%2 == 0 {
			s = Critical
		}
		if st, _ := tr.Observe(s); st.Flapping || st.PercentChange != 0 {
			t.Fatalf("result %d: %+v", i, st)
		}
	}
}

// Properties of any run of results, against a plain model of Nagios's rules.
func TestTrackerProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sched := Schedule{
			Interval:      time.Duration(rapid.IntRange(1, 600).Draw(t, "interval")) * time.Second,
			RetryInterval: time.Duration(rapid.IntRange(1, 600).Draw(t, "retry")) * time.Second,
			Retries:       rapid.IntRange(1, 6).Draw(t, "retries"),
		}
		tr := NewTracker(sched)
		results := rapid.SliceOfN(rapid.IntRange(0, 3), 1, 200).Draw(t, "results")
		run := 0 // problem results in a row
		prev := tr.Status()
		var hard []State // the states that entered the flap history
		for i, r := range results {
			s := State(r)
			st, ch := tr.Observe(s)
			if s == OK {
				run = 0
			} else {
				run++
			}
			if st.State != s {
				t.Fatalf("result %d: state %v, want %v", i, st.State, s)
			}
			switch {
			case s == OK && (!st.Hard || st.Attempt != 1):
				t.Fatalf("result %d: OK must be hard at attempt 1: %+v", i, st)
			case s != OK && st.Hard != (run >= sched.Retries):
				t.Fatalf("result %d: %d problems in a row with %d retries, hard=%v", i, run, sched.Retries, st.Hard)
			case s != OK && st.Attempt != min(run, sched.Retries):
				t.Fatalf("result %d: attempt %d, want %d", i, st.Attempt, min(run, sched.Retries))
			}
			if wantNext := map[bool]time.Duration{true: sched.Interval, false: sched.RetryInterval}[st.Hard]; tr.Next() != wantNext {
				t.Fatalf("result %d: next in %v, want %v", i, tr.Next(), wantNext)
			}
			first := i == 0
			if ch.State != (first || st.State != prev.State) || ch.Hard != (first || st.Hard != prev.Hard) || ch.Flapping != (first || st.Flapping != prev.Flapping) {
				t.Fatalf("result %d: change %+v from %+v to %+v", i, ch, prev, st)
			}
			// Flap detection over the hard states, history starting full of OK.
			if st.Hard {
				hard = append(hard, st.State)
			}
			h := append(make([]State, FlapHistory), hard...)[len(hard):]
			want := 0.0
			for k := 1; k < FlapHistory; k++ {
				if h[k] != h[k-1] {
					want += weight(k)
				}
			}
			want = want * 100 / 20
			if math.Abs(st.PercentChange-want) > 1e-9 {
				t.Fatalf("result %d: %.4f%% change, want %.4f%%", i, st.PercentChange, want)
			}
			switch {
			case want >= FlapHigh && !st.Flapping, want <= FlapLow && st.Flapping:
				t.Fatalf("result %d: flapping=%v at %.2f%%", i, st.Flapping, want)
			case want > FlapLow && want < FlapHigh && st.Flapping != prev.Flapping:
				t.Fatalf("result %d: flapping changed to %v between the thresholds (%.2f%%)", i, st.Flapping, want)
			}
			prev = st
		}
	})
}
