package agent

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// reconcile first brings the apps on disk back under supervision (an interrupted install goes
// on, running processes are adopted), without waiting for the server; then it installs the
// assigned releases whenever the desired state changes, and retries failures that may mend (the
// server away, a download that brought nothing) with backoff on the clock, or at once when the
// server answers again after an outage. A download cut off after bytes came does not wait: the
// installer resumes it at once.
func (a *Agent) reconcile(ctx context.Context) {
	a.resume(ctx)
	select {
	case <-a.online:
	case <-ctx.Done():
		return
	}
	bo := backoff{clk: a.clk, min: time.Second, max: 5 * time.Minute}
	var fetched int64 // blob bytes the installer had downloaded at the last retry
	for {
		d, changed := a.Desired()
		retry := a.converge(ctx, d)
		var t clock.Timer
		var wait <-chan time.Time
		if retry {
			// The wait grows over tries that got nowhere; one that brought bytes before it
			// failed starts it over.
			if n := a.inst.fetched.Load(); n != fetched {
				fetched = n
				bo.reset()
			}
			t = a.clk.NewTimer(bo.next())
			wait = t.C()
		} else {
			bo.reset()
		}
		var back <-chan struct{}
		if retry {
			back = a.reconnected
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-wait:
		case <-back:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// converge brings each assigned app to its release and reports the outcome; it returns true
// when an install failed in a way worth retrying. A release that rolled back, or whose
// post_install hook failed, is not tried again while it stays the assigned one.
func (a *Agent) converge(ctx context.Context, d api.Desired) (retry bool) {
	for _, as := range d.Apps {
		if _, err := checkAssignment(as); err != nil {
			a.setFailed(as.App, &failure{assignment: as, err: reportable(err.Error()), final: true})
			continue
		}
		r, err := a.app(as.App)
		if err != nil {
			a.setFailed(as.App, &failure{assignment: as, err: reportable(err.Error())})
			a.log.Error("cannot supervise app", "app", as.App, "err", err)
			retry = true
			continue
		}
		if a.state(r).Step != "" { // an install that stopped part-way goes on first
			err := a.transition(ctx, r)
			if ctx.Err() != nil {
				return false
			}
			if err != nil {
				a.log.Warn("install interrupted; will retry", "app", as.App, "err", err)
				retry = true
				continue
			}
		}
		if cur, ok := a.inst.current(as.App); ok && cur.Version == as.Version && cur.SHA256 == as.SHA256 {
			a.setFailed(as.App, nil)
			if as.Stopped {
				a.stopApp(ctx, r)
			} else {
				a.setStopped(r, false)
				a.ensureRunning(ctx, r)
				a.restartIfAsked(ctx, r, as.Restarts)
			}
			if a.state(r).Failure != nil {
				if err := a.update(r, func(st *runState) { st.Failure = nil }); err != nil {
					a.log.Error("save app state", "app", as.App, "err", err)
				}
			}
			continue
		}
		if as.Withdrawn != "" {
			continue // observe reports why it is not installed
		}
		a.runMu.Lock()
		f, failed := a.failed[as.App]
		a.runMu.Unlock()
		if failed && f.final && sameRelease(f.assignment, as) {
			continue
		}
		if f := a.state(r).Failure; f != nil && sameRelease(f.Assignment, as) {
			// Rolled back (or failed for good): not again until the assignment changes.
			a.log.Info("not trying a release that did not stay again until the assignment changes", "app", as.App, "version", as.Version, "state", f.State)
			continue
		}
		a.log.Info("installing", "app", as.App, "version", as.Version)
		err = a.deploy(ctx, r, as)
		if ctx.Err() != nil {
			return false
		}
		var perm permanentError
		switch {
		case err == nil:
			a.setFailed(as.App, nil)
			if f := a.state(r).Failure; f == nil {
				a.log.Info("installed", "app", as.App, "version", as.Version, "sha256", as.SHA256)
			}
		case errors.As(err, &perm):
			a.setFailed(as.App, &failure{assignment: as, err: reportable(err.Error()), final: true})
			a.log.Error("install refused", "app", as.App, "version", as.Version, "err", err)
		default:
			a.setFailed(as.App, &failure{assignment: as, err: reportable(err.Error())})
			a.log.Warn("install failed; will retry", "app", as.App, "version", as.Version, "err", err)
			retry = true
		}
		a.refresh()
	}
	if d.Generation > 0 {
		a.undeployUnassigned(ctx, d)
	}
	a.refresh()
	return retry
}

// undeployUnassigned takes off the node every installed app the desired state no longer
// assigns (ferry undeploy): its processes are stopped and its releases, logs and state removed.
func (a *Agent) undeployUnassigned(ctx context.Context, d api.Desired) {
	assigned := map[string]bool{}
	for _, as := range d.Apps {
		assigned[as.App] = true
	}
	for name := range a.inst.all() {
		if assigned[name] || ctx.Err() != nil {
			continue
		}
		r, err := a.app(name)
		if err != nil {
			a.log.Error("undeploy", "app", name, "err", err)
			continue
		}
		a.log.Info("undeploying: the app is no longer assigned", "app", name)
		if err := a.stopAll(ctx, r, nil); err != nil {
			a.log.Error("undeploy: stop", "app", name, "err", err)
			continue
		}
		a.runMu.Lock()
		delete(a.runs, name)
		gone := slices.Collect(maps.Values(r.st.Ports))
		a.runMu.Unlock()
		a.claims.release(gone...)
		r.stopFeed()
		if err := r.sup.Close(); err != nil {
			a.log.Warn("undeploy: close supervisor", "app", name, "err", err)
		}
		if err := a.inst.removeApp(name); err != nil {
			a.log.Error("undeploy: remove releases", "app", name, "err", err)
		}
		a.setFailed(name, nil)
	}
}

// ensureRunning starts (or adopts) the current release's processes of an app that has none
// running: the agent found it unassigned when it started, and it is assigned again.
func (a *Agent) ensureRunning(ctx context.Context, r *appRun) {
	a.runMu.Lock()
	running := r.cur != nil
	a.runMu.Unlock()
	if running {
		return
	}
	rel, err := a.release(r, a.inst.currentDir(r.name))
	if err == nil {
		var w *procWatch
		if w, err = a.startRelease(ctx, r, rel); err == nil {
			w.cancel()
		}
	}
	if err != nil && ctx.Err() == nil {
		a.log.Error("start current release", "app", r.name, "err", err)
	}
}

// sameRelease tells whether two assignments name the same release at the same rollout attempt:
// an operator's stop or restart changes an assignment, and must not make a release that rolled
// back be tried again; a rollout's retry (a new attempt) must.
func sameRelease(x, y api.Assignment) bool {
	return x.App == y.App && x.Version == y.Version && x.SHA256 == y.SHA256 && x.Attempt == y.Attempt
}

// stopApp stops an app's processes because an operator asked: they stay stopped, across
// restarts of the agent (the desired state says so), until it is started again.
func (a *Agent) stopApp(ctx context.Context, r *appRun) {
	if a.setStopped(r, true) {
		return
	}
	a.log.Info("stopping app as asked", "app", r.name)
	if err := a.stopAll(ctx, r, nil); err != nil && ctx.Err() == nil {
		a.log.Error("stop app", "app", r.name, "err", err)
	}
	a.refresh()
}

// setStopped records whether an operator stopped r, and reports whether it was already so.
func (a *Agent) setStopped(r *appRun, stopped bool) bool {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	was := r.stopped
	r.stopped = stopped
	return was == stopped
}

// restartIfAsked restarts r's processes once for each restart an operator asked for since the
// last one carried out (asked is api.Assignment.Restarts), and records that it did.
func (a *Agent) restartIfAsked(ctx context.Context, r *appRun, asked int64) {
	if asked <= a.state(r).Restarted {
		return
	}
	a.runMu.Lock()
	cur := r.cur
	a.runMu.Unlock()
	if cur != nil {
		a.log.Info("restarting app as asked", "app", r.name)
		for _, p := range cur.m.Processes {
			if err := r.sup.Restart(ctx, p.Name); err != nil && ctx.Err() == nil {
				a.log.Error("restart process", "app", r.name, "process", p.Name, "err", err)
			}
		}
	}
	if err := a.update(r, func(st *runState) { st.Restarted = asked }); err != nil {
		a.log.Error("save app state", "app", r.name, "err", err)
	}
	a.refresh()
}

func (a *Agent) setFailed(app string, f *failure) {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	if f == nil {
		delete(a.failed, app)
	} else {
		a.failed[app] = *f
	}
}

// refresh reports the apps as they are now.
func (a *Agent) refresh() {
	d, _ := a.Desired()
	a.setReport(a.observe(d))
}

// observe builds the app report: every installed app with its state, processes and ports and,
// for each assigned release that is not installed, which one and why not.
func (a *Agent) observe(d api.Desired) []api.NodeApp {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	apps := map[string]api.NodeApp{}
	for name, cur := range a.inst.all() {
		t := cur.InstalledAt
		apps[name] = api.NodeApp{App: name, Version: cur.Version, SHA256: cur.SHA256, InstalledAt: &t}
	}
	for name, r := range a.runs {
		na, ok := apps[name]
		if !ok && r.phase == "" {
			continue
		}
		na.App = name
		describe(r, &na)
		apps[name] = na
	}
	for _, as := range d.Apps {
		na := apps[as.App]
		na.App = as.App
		if na.Version == as.Version && na.SHA256 == as.SHA256 {
			continue
		}
		na.Pending, na.Attempt = as.Version, as.Attempt
		r := a.runs[as.App]
		switch f, failed := a.failed[as.App]; {
		case as.Withdrawn != "":
			na.Error = reportable("release withdrawn (" + as.Withdrawn + "); not installing it")
		case r != nil && r.phase == "" && r.st.Failure != nil && r.st.Failure.Assignment == as:
			na.State, na.Error, na.LogTail = r.st.Failure.State, r.st.Failure.Error, r.st.Failure.LogTail
		case failed && f.assignment == as:
			na.Error, na.Retry = f.err, !f.final
			if na.Version == "" && f.final {
				na.State = api.AppStateFailed
			}
		}
		apps[as.App] = na
	}
	out := make([]api.NodeApp, 0, len(apps))
	for _, na := range apps {
		out = append(out, na)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// setReport records a new app report and, when it differs from the last, has the next sync
// carry it at once.
func (a *Agent) setReport(apps []api.NodeApp) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if reflect.DeepEqual(apps, a.report) {
		return
	}
	a.report = apps
	a.reportVer++
	a.reportDirty = true
	close(a.reported)
	a.reported = make(chan struct{})
	a.pokeStream()
}

// Report returns the agent's latest app report and a channel closed when it changes.
func (a *Agent) Report() ([]api.NodeApp, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]api.NodeApp{}, a.report...), a.reported
}

// Apps returns the agent's latest app report.
func (a *Agent) Apps() []api.NodeApp {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]api.NodeApp{}, a.report...)
}

// maxReportedError bounds an error message in the app report, as the server does.
const maxReportedError = 1000

// reportable makes an error message fit the app report the server accepts: printable text
// (control and bidi characters become spaces, invalid UTF-8 a replacement character), at most
// maxReportedError bytes.
func reportable(msg string) string { return printable(msg, maxReportedError) }

// printable makes msg one line of printable text (control and bidi characters become spaces,
// invalid UTF-8 a replacement character) of at most limit bytes, cut at a character's end.
func printable(msg string, limit int) string {
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(msg, "\uFFFD"))
	if len(msg) > limit {
		msg = strings.ToValidUTF8(msg[:limit], "") // drops a character cut in two
	}
	return msg
}
