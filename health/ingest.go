package health

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Ingest keeps results in memory and writes them in batches: at 10,000 nodes with five checks
// each every 30s, a write per result would cost far more than reading it. What must not be lost
// is written at once, in one transaction with its events, before Ingest returns (and so before
// the agent's frame is answered): a change of a check's hard state or of its flapping, with the
// alert it raises or clears. The rest waits for Flush, which the server calls once per heartbeat
// interval: a latest result whose state changed (a soft one) at the next, one that only ran again
// at most every resultEvery; a history bucket once it has ended. FlushAll, as the server stops,
// writes everything. So a crash loses, of what Ingest took, at most: soft state changes of the
// last flush interval, the last resultEvery of unchanged runs (a check's next run replaces its
// latest result anyway), and the history buckets in progress (the five minutes', and the hour's
// aggregate, whose runs the five-minute buckets still hold for two days). Another replica, or
// this one after a restart, sees an unchanged result up to resultEvery late.

// resultEvery is how often a latest result whose state has not changed is written.
const resultEvery = 2 * time.Minute

// Bounds of what the server keeps of results.
const (
	// MaxPerfSeries bounds the perf labels whose values a check's history keeps.
	MaxPerfSeries = 8
	// MaxSkew is how far in the future a result's time may be; a later time is cut to the
	// server's now (the agent's clock is off).
	MaxSkew = 5 * time.Minute
	// maxPerfLabel and maxPerfText bound a perf item's label and its threshold and unit fields.
	maxPerfLabel = 128
	maxPerfText  = 64
)

type seriesKey struct{ node, check string }

// series is one node's check as this server knows it.
type series struct {
	latest   api.CheckResult
	have     bool
	dirty    bool      // latest not written since it changed
	changed  bool      // its state, hardness or flapping changed since it was written
	written  time.Time // when latest was written last (the server's clock)
	hard     string    // the last hard state; "" until one is known, which counts as OK
	flapping bool
	buckets  [len(widths)]agg
}

func (sr *series) hardState() string { return orOK(sr.hard) }

// agg is a history bucket in progress.
type agg struct {
	start time.Time
	worst string
	count int
	perf  []perfAgg
	dirty bool
}

type perfAgg struct {
	label         string
	min, max, sum float64
	n             int
}

func (a *agg) add(r api.CheckResult) {
	if a.count == 0 {
		a.worst = r.State
	}
	a.worst = worse(a.worst, r.State)
	a.count++
	a.dirty = true
next:
	for _, p := range r.Perf {
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
			continue
		}
		for i := range a.perf {
			if pa := &a.perf[i]; pa.label == p.Label {
				pa.min, pa.max, pa.sum, pa.n = min(pa.min, p.Value), max(pa.max, p.Value), pa.sum+p.Value, pa.n+1
				continue next
			}
		}
		if len(a.perf) < MaxPerfSeries {
			a.perf = append(a.perf, perfAgg{label: p.Label, min: p.Value, max: p.Value, sum: p.Value, n: 1})
		}
	}
}

func (a *agg) bucket(width time.Duration) api.CheckBucket {
	b := api.CheckBucket{Start: a.start, Width: api.Duration(width), Worst: a.worst, Count: a.count}
	for _, p := range a.perf {
		b.Perf = append(b.Perf, api.PerfStats{Label: p.label, Min: p.min, Avg: p.sum / float64(p.n), Max: p.max})
	}
	return b
}

func (s *Service) get(k seriesKey) *series {
	sr := s.series[k]
	if sr == nil {
		sr = &series{}
		s.series[k] = sr
	}
	return sr
}

// CheckResult refuses a result that is malformed, and cuts what is merely long: output past
// api.MaxCheckOutput, perf items past api.MaxCheckPerf, a time more than MaxSkew past now. It
// returns the result as kept.
func CheckResult(r api.CheckResult, now time.Time) (api.CheckResult, error) {
	if err := checkResultName(r.Check, r.App); err != nil {
		return r, err
	}
	if _, ok := rank[r.State]; !ok {
		return r, fmt.Errorf("check %s: unknown state %q; want OK, WARNING, CRITICAL or UNKNOWN", r.Check, truncate(r.State, 20))
	}
	if r.Attempt < 0 || r.Attempt > 1000 || r.Duration < 0 {
		return r, fmt.Errorf("check %s: negative or absurd attempt or duration", r.Check)
	}
	if r.Time.IsZero() || r.Time.Year() < 2000 {
		return r, fmt.Errorf("check %s: result without a time", r.Check)
	}
	if r.Time.After(now.Add(MaxSkew)) {
		r.Time = now
	}
	if r.State == api.CheckOK {
		r.Hard = true // an OK state is always hard
	}
	r.Output = cutText(r.Output, api.MaxCheckOutput)
	if len(r.Perf) > api.MaxCheckPerf {
		r.Perf = r.Perf[:api.MaxCheckPerf]
	}
	for _, p := range r.Perf {
		if p.Label == "" || len(p.Label) > maxPerfLabel || !api.Printable(p.Label) ||
			len(p.UOM) > maxPerfText || len(p.Warn) > maxPerfText || len(p.Crit) > maxPerfText ||
			!api.Printable(p.UOM+p.Warn+p.Crit) {
			return r, fmt.Errorf("check %s: a perf item with an empty, over-long or unprintable field", r.Check)
		}
	}
	return r, nil
}

// checkResultName accepts an operator check's name, or APP/NAME with app APP.
func checkResultName(check, app string) error {
	a, name, isApp := strings.Cut(check, "/")
	if !isApp {
		if app != "" {
			return fmt.Errorf("check %q names app %q but is not APP/NAME", truncate(check, 70), truncate(app, 70))
		}
		if !checkName.MatchString(check) {
			return fmt.Errorf("invalid check name %q", truncate(check, 70))
		}
		return nil
	}
	if a != app || labels.CheckName("app name", a) != nil || !checkName.MatchString(name) {
		return fmt.Errorf("invalid app check name %q (app %q): want APP/NAME of the app it names", truncate(check, 70), truncate(app, 70))
	}
	return nil
}

// cutText makes s printable on one line and at most n bytes, cut at a rune.
func cutText(s string, n int) string {
	if !api.Printable(s) {
		s = strings.Map(func(r rune) rune {
			if r == utf8.RuneError || !api.Printable(string(r)) {
				return ' '
			}
			return r
		}, strings.ToValidUTF8(s, " "))
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// change is a result whose hard state or flapping changed: written at once.
type change struct {
	r                    api.CheckResult
	from                 string // hard state before
	wasFlapping          bool
	hardMoved, flapMoved bool
}

// Ingest takes one agent frame's results. A frame of more than api.MaxCheckResults results, or
// with a malformed one, is refused whole (fault.ErrInvalid, saying which); results of checks
// the node is not given are dropped. See the top of this file for what is written when.
func (s *Service) Ingest(ctx context.Context, node string, results []api.CheckResult) error {
	if len(results) == 0 {
		return nil
	}
	if len(results) > api.MaxCheckResults {
		return fault.Invalid("a frame of %d check results; at most %d (send the rest with the next)", len(results), api.MaxCheckResults)
	}
	now := s.clk.Now()
	kept := results[:0:0]
	for _, r := range results {
		r, err := CheckResult(r, now)
		if err != nil {
			return fault.Invalid("check results from %s: %v", node, err)
		}
		if s.allowed(node, r.Check, r.App) {
			kept = append(kept, r)
		}
	}
	var changes []change
	s.mu.Lock()
	for _, r := range kept {
		sr := s.get(seriesKey{node, r.Check})
		s.fold(node, r, sr)
		if sr.have && r.Time.Before(sr.latest.Time) {
			continue // an older run than the one held
		}
		if !sr.have || r.State != sr.latest.State || r.Hard != sr.latest.Hard || r.Flapping != sr.latest.Flapping {
			sr.changed = true
		}
		sr.latest, sr.have, sr.dirty = r, true, true
		c := change{r: r, from: sr.hard, wasFlapping: sr.flapping}
		c.hardMoved = r.Hard && r.State != sr.hardState()
		c.flapMoved = r.Flapping != sr.flapping
		if c.hardMoved || c.flapMoved {
			if r.Hard {
				sr.hard = r.State
			}
			sr.flapping = r.Flapping
			sr.dirty, sr.changed, sr.written = false, false, now // written below
			changes = append(changes, c)
		}
	}
	s.mu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		for _, c := range changes {
			if err := s.record(tx, node, c, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Judge these results again with the next ones: the change is not recorded.
		s.mu.Lock()
		for _, c := range changes {
			if sr := s.series[seriesKey{node, c.r.Check}]; sr != nil {
				sr.hard, sr.flapping, sr.dirty, sr.changed = c.from, c.wasFlapping, true, true
			}
		}
		s.mu.Unlock()
		return fmt.Errorf("record check state changes of %s: %w", node, err)
	}
	return nil
}

// fold adds r to the series' history buckets, closing those it has moved past.
func (s *Service) fold(node string, r api.CheckResult, sr *series) {
	for i, w := range widths {
		start := r.Time.Truncate(w.width)
		a := &sr.buckets[i]
		switch {
		case a.count > 0 && start.Before(a.start):
			continue // a late result for a bucket closed already
		case a.count > 0 && start.After(a.start):
			if a.dirty {
				s.closed = append(s.closed, store.CheckBucket{Node: node, Check: r.Check, CheckBucket: a.bucket(w.width)})
			}
			*a = agg{}
		}
		a.start = start
		a.add(r)
	}
}

// record writes one change with its events in tx.
func (s *Service) record(tx store.Tx, node string, c change, now time.Time) error {
	r := c.r
	if err := tx.PutCheckResult(api.NodeCheck{Node: node, CheckResult: r}); err != nil {
		return err
	}
	var evs []api.Event
	if c.flapMoved {
		evs = append(evs, api.NewEvent(now, api.EventCheckFlapping, node, api.CheckFlapping{Node: node, Check: r.Check, Flapping: r.Flapping, State: r.State}))
	}
	if c.hardMoved {
		evs = append(evs, api.NewEvent(now, api.EventCheckState, node, api.CheckStateChanged{Node: node, Check: r.Check, From: orOK(c.from), To: r.State, Output: r.Output}))
	}
	if _, err := tx.AppendEvents(evs...); err != nil || r.Flapping {
		return err // a flapping check raises and clears no alert
	}
	state := orOK(c.from)
	if r.Hard {
		state = r.State
	}
	_, err := s.alert(tx, node, r.Check, state, r.Output, r.Time, now)
	return err
}

// Flush writes, in one transaction, the latest results due (see the top of this file) and the
// history buckets that have ended. On failure they stay to be written with the next.
func (s *Service) Flush(ctx context.Context) error { return s.flush(ctx, false) }

// FlushAll writes every latest result and history bucket not written yet, those in progress
// included: the server calls it as it stops.
func (s *Service) FlushAll(ctx context.Context) error { return s.flush(ctx, true) }

func (s *Service) flush(ctx context.Context, all bool) error {
	now := s.clk.Now()
	s.mu.Lock()
	s.sampleTrend(now)
	results := make([]api.NodeCheck, 0, len(s.series)/4)
	buckets := s.closed
	s.closed = nil
	var wrote []seriesKey
	for k, sr := range s.series {
		if sr.dirty && (all || sr.changed || now.Sub(sr.written) >= resultEvery) {
			results = append(results, api.NodeCheck{Node: k.node, CheckResult: sr.latest})
			sr.dirty, sr.changed, sr.written = false, false, now
			wrote = append(wrote, k)
		}
		for i, w := range widths {
			// A bucket whose time is over is written even while no later result closes it.
			if a := &sr.buckets[i]; a.dirty && (all || !a.start.Add(w.width).After(now)) {
				buckets = append(buckets, store.CheckBucket{Node: k.node, Check: k.check, CheckBucket: a.bucket(w.width)})
				a.dirty = false
			}
		}
	}
	s.mu.Unlock()
	// In key order: the inserts then walk each B-tree once.
	slices.SortFunc(results, func(a, b api.NodeCheck) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Check, b.Check))
	})
	slices.SortFunc(buckets, func(a, b store.CheckBucket) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Check, b.Check), cmp.Compare(a.Width, b.Width), a.Start.Compare(b.Start))
	})
	err := s.store.WriteChecks(ctx, results, buckets)
	if err != nil {
		s.mu.Lock()
		for _, k := range wrote {
			if sr := s.series[k]; sr != nil {
				sr.dirty, sr.changed = true, true
			}
		}
		// Buckets still in progress are written whole with a later batch; ended ones go back.
		for _, b := range buckets {
			if sr := s.series[seriesKey{b.Node, b.Check}]; sr != nil && s.inProgress(sr, b) {
				continue
			}
			s.closed = append(s.closed, b)
		}
		s.mu.Unlock()
	}
	return err
}

// inProgress marks dirty again the bucket of sr that b was written from, if sr holds it still.
func (s *Service) inProgress(sr *series, b store.CheckBucket) bool {
	for i, w := range widths {
		if sr.buckets[i].start.Equal(b.Start) && time.Duration(b.Width) == w.width {
			sr.buckets[i].dirty = true
			return true
		}
	}
	return false
}

// Forget drops what memory holds of a removed check (check.removed) or node (node.revoked, with
// check ""): every replica's server calls it as the change feed brings the event.
func (s *Service) Forget(node, check string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.series {
		if (node == "" || k.node == node) && (check == "" || k.check == check) {
			delete(s.series, k)
		}
	}
	kept := s.closed[:0]
	for _, b := range s.closed {
		if (node != "" && b.Node != node) || (check != "" && b.Check != check) {
			kept = append(kept, b)
		}
	}
	s.closed = kept
}

// orOK is a hard state, OK when none is known.
func orOK(state string) string {
	if state == "" {
		return api.CheckOK
	}
	return state
}
