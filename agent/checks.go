package agent

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/check"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/supervise"
)

// The node's checks run all the time, each on its own interval: the operator's checks in the
// desired state, and the manifest checks of every app that runs (installed, verified, not
// stopped, no change under way), named "APP/NAME". Each keeps Nagios's soft and hard states
// and flap detection (check.Tracker). A result whose state, hardness or flapping changed goes
// to the server at once, in a frame sent for it (with the results queued before it, so that
// none arrives after a newer one of its check); the others wait for the next heartbeat.

// maxRunningChecks bounds the checks one agent runs at once, so that a fleet of plugins due
// together cannot swamp the node: the others wait their turn.
const maxRunningChecks = 4

// manifestRetries is max_check_attempts for a manifest's checks, which cannot set it.
const manifestRetries = 3

// pluginDir is where Debian's monitoring-plugins live: on an operator check's PATH, last, so
// that `--exec -- check_load -w 5 -c 10` finds its plugin.
const pluginDir = "/usr/lib/nagios/plugins"

// Bounds on the results waiting for a frame, and on those one frame carries.
const (
	// maxQueuedResults is how many results wait while the server is away; past it, a check's
	// older results go first (see checkQueue.push).
	maxQueuedResults = 4 * api.MaxCheckResults
	// maxFrameCheckBytes bounds the encoded results of one frame, well inside the server's
	// frame limit (1 MiB) with the app report beside them.
	maxFrameCheckBytes = 256 << 10
)

// nodeCheck is one check the node should run, as it is started: a change of any part of it
// starts it afresh.
type nodeCheck struct {
	name  string // the operator's name, or APP/NAME
	app   string // set for a manifest's check
	spec  check.Spec
	sched check.Schedule
}

// runNodeChecks keeps the running checks in line with the desired state and the running apps
// until ctx ends, then stops them all and returns once they are gone.
func (a *Agent) runNodeChecks(ctx context.Context) {
	cs := a.newCheckSet(ctx)
	defer cs.sync(nil)
	for {
		d, changed := a.Desired()
		_, reported := a.Report()
		cs.sync(a.wantedChecks(d))
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-reported:
		}
	}
}

// checkSet is the checks an agent runs, each in a goroutine of its own, sharing the slots.
type checkSet struct {
	a     *Agent
	ctx   context.Context
	slots chan struct{}
	runs  map[string]*checkRun
}

type checkRun struct {
	c      nodeCheck
	cancel context.CancelFunc
	done   chan struct{}
}

func (a *Agent) newCheckSet(ctx context.Context) *checkSet {
	return &checkSet{a: a, ctx: ctx, slots: make(chan struct{}, maxRunningChecks), runs: map[string]*checkRun{}}
}

// sync runs want: it stops the checks that are not in it, or not as it has them, and returns
// once they are gone (a run under way is cancelled, and its result dropped); then it starts
// those not running.
func (cs *checkSet) sync(want map[string]nodeCheck) {
	var gone []*checkRun
	for name, r := range cs.runs {
		if w, ok := want[name]; !ok || !reflect.DeepEqual(w, r.c) {
			r.cancel()
			gone = append(gone, r)
			delete(cs.runs, name)
		}
	}
	for _, r := range gone {
		<-r.done
		cs.a.log.Debug("check stopped", "check", r.c.name)
	}
	for name, c := range want {
		if cs.runs[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(cs.ctx)
		r := &checkRun{c: c, cancel: cancel, done: make(chan struct{})}
		cs.runs[name] = r
		go func() { defer close(r.done); cs.a.runCheck(ctx, c, cs.slots) }()
		cs.a.log.Debug("check started", "check", name)
	}
}

// wantedChecks is every check the node should run now, by name.
func (a *Agent) wantedChecks(d api.Desired) map[string]nodeCheck {
	want := map[string]nodeCheck{}
	node := a.Name()
	for i, c := range d.Checks {
		if i >= api.MaxNodeChecks {
			break
		}
		if _, dup := want[c.Name]; dup || c.Name == "" {
			continue // the server sends neither; a check without a name cannot be reported
		}
		want[c.Name] = operatorCheck(node, c)
	}
	type appRelease struct {
		r   *appRun
		rel *releaseInfo
	}
	var apps []appRelease
	a.runMu.Lock()
	for _, r := range a.runs {
		if r.phase == "" && r.st.Step == "" && !r.stopped && r.cur != nil {
			apps = append(apps, appRelease{r, r.cur})
		}
	}
	a.runMu.Unlock()
	for _, ar := range apps {
		checks, _, err := a.checkSpecs(ar.r, ar.rel)
		if err != nil {
			a.log.Warn("app checks not run", "app", ar.r.name, "err", err)
			continue
		}
		for _, c := range checks {
			name := ar.r.name + "/" + c.name
			want[name] = nodeCheck{name: name, app: ar.r.name, spec: c.spec,
				sched: check.Schedule{Interval: c.interval, Retries: manifestRetries}}
		}
	}
	return want
}

// operatorCheck turns an operator's check into the runner's. Its command line is taken as it
// is (no ${FERRY_PORT_*}: it belongs to no app), run from / with a PATH that ends in Debian's
// plugin directory and FERRY_NODE set.
func operatorCheck(node string, c api.CheckSpec) nodeCheck {
	s := check.Spec{HTTP: c.HTTP, TCP: c.TCP, Exec: slices.Clone(c.Exec), Disk: c.Disk, Warn: c.Warn, Crit: c.Crit,
		Timeout: time.Duration(c.Timeout)}
	if len(s.Exec) > 0 {
		s.Dir = "/"
		s.Env = []string{"FERRY_NODE=" + node, "PATH=" + supervise.DefaultPath + ":" + pluginDir}
	}
	return nodeCheck{name: c.Name, spec: s, sched: check.Schedule{Interval: time.Duration(c.Interval),
		RetryInterval: time.Duration(c.RetryInterval), Retries: c.Retries}}
}

// runCheck runs c on its schedule until ctx ends, at once first, holding one of slots while it
// runs, and queues each result for the server.
func (a *Agent) runCheck(ctx context.Context, c nodeCheck, slots chan struct{}) {
	tr := check.NewTracker(c.sched)
	var wait time.Duration
	for {
		if wait > 0 && !clock.Sleep(ctx, a.clk, wait) {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		res := a.checks.Run(ctx, c.spec)
		<-slots
		if ctx.Err() != nil {
			return // stopped or changed: a cancelled run says nothing of the service
		}
		prev := tr.Status()
		st, change := tr.Observe(res.State)
		a.log.Debug("check result", "check", c.name, "state", st.State, "hard", st.Hard, "attempt", st.Attempt, "output", res.Output)
		if change.HardState {
			if st.State == check.OK {
				a.log.Info("check recovered", "check", c.name, "output", res.Output)
			} else {
				a.log.Warn("check failing", "check", c.name, "state", st.State, "was", prev.State, "output", res.Output)
			}
		}
		a.queueCheck(checkResult(c, res, st), change.Any())
		// The next run is due an interval after this one started, as Nagios schedules it.
		wait = max(tr.Next()-a.clk.Now().Sub(res.Time), 0)
	}
}

// checkResult is a run as the server reads it: output and perfdata within the contract's
// bounds. A perfdata item the plugin could not measure ("U") has no number to carry and is
// left out.
func checkResult(c nodeCheck, res check.Result, st check.Status) api.CheckResult {
	out := api.CheckResult{Check: c.name, App: c.app, State: st.State.String(), Hard: st.Hard, Attempt: st.Attempt,
		Flapping: st.Flapping, Output: printable(res.Output, api.MaxCheckOutput), Time: res.Time.UTC(),
		Duration: api.Duration(res.Duration)}
	for _, p := range res.Perf {
		if len(out.Perf) == api.MaxCheckPerf {
			break
		}
		if p.Unknown {
			continue
		}
		cp := api.CheckPerf{Label: printable(p.Label, check.MaxLabelLen), Value: p.Value, UOM: printable(p.UOM, 16), Min: p.Min, Max: p.Max}
		if p.Warn != nil {
			cp.Warn = p.Warn.String()
		}
		if p.Crit != nil {
			cp.Crit = p.Crit.String()
		}
		out.Perf = append(out.Perf, cp)
	}
	return out
}

// queueCheck queues a result for the next frame; an urgent one (its state, hardness or
// flapping changed) has a frame sent for it at once.
func (a *Agent) queueCheck(r api.CheckResult, urgent bool) {
	a.mu.Lock()
	a.checkQueue.push(r, urgent)
	a.mu.Unlock()
	if urgent {
		a.pokeStream()
	}
}

// pokeStream has the stream send a frame now, if it is not about to.
func (a *Agent) pokeStream() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// checkQueue holds the results the server has not been sent yet, oldest first. A frame carries
// them all, up to its bounds, in the order they came: a result never reaches the server after
// a newer one of its check, so an urgent result takes the routine ones before it along.
type checkQueue struct {
	items []queuedResult
}

type queuedResult struct {
	r      api.CheckResult
	size   int // encoded bytes
	urgent bool
}

// push queues r. A full queue makes room by dropping the oldest result of a check that has a
// newer one queued (the newest result of each check is kept), else the oldest of all.
func (q *checkQueue) push(r api.CheckResult, urgent bool) {
	b, _ := json.Marshal(r)
	if len(q.items) >= maxQueuedResults {
		drop := 0
		newer := map[string]bool{}
		for i := len(q.items) - 1; i >= 0; i-- {
			if newer[q.items[i].r.Check] || q.items[i].r.Check == r.Check {
				drop = i // keep looking: the oldest such goes
			}
			newer[q.items[i].r.Check] = true
		}
		q.items = slices.Delete(q.items, drop, drop+1)
	}
	q.items = append(q.items, queuedResult{r: r, size: len(b), urgent: urgent})
}

// take removes and returns the results one frame carries: the oldest, at most
// api.MaxCheckResults and maxFrameCheckBytes of them (at least one).
func (q *checkQueue) take() []api.CheckResult {
	n, bytes := 0, 0
	for n < len(q.items) && n < api.MaxCheckResults && (n == 0 || bytes+q.items[n].size <= maxFrameCheckBytes) {
		bytes += q.items[n].size
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]api.CheckResult, n)
	for i := range out {
		out[i] = q.items[i].r
	}
	q.items = slices.Delete(q.items, 0, n)
	return out
}

// putBack returns results a frame could not carry (the stream broke) to the queue's front,
// as far as there is room.
func (q *checkQueue) putBack(rs []api.CheckResult) {
	room := maxQueuedResults - len(q.items)
	if room <= 0 {
		return
	}
	rs = rs[max(0, len(rs)-room):]
	back := make([]queuedResult, 0, len(rs)+len(q.items))
	for _, r := range rs {
		b, _ := json.Marshal(r)
		back = append(back, queuedResult{r: r, size: len(b)})
	}
	q.items = append(back, q.items...)
}

// checkBatch is how long routine results may wait for a heartbeat to carry them; more than
// batchResults of them go with the next one all the same.
const (
	checkBatch   = 30 * time.Second
	batchResults = api.MaxCheckResults / 4
)

// due tells whether a heartbeat at now carries the queued results: an urgent one waits, the
// oldest has waited checkBatch, or there are many.
func (q *checkQueue) due(now time.Time) bool {
	return len(q.items) > 0 && (q.urgent() || len(q.items) >= batchResults || now.Sub(q.items[0].r.Time) >= checkBatch)
}

// urgent tells whether an urgent result waits.
func (q *checkQueue) urgent() bool {
	return slices.ContainsFunc(q.items, func(x queuedResult) bool { return x.urgent })
}
