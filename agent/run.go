package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/supervise"
)

// An app's life on the node is a durable state machine. A new release goes through
//
//	download → unpack → post_install → pre_stop → stop → switch → start → post_start → verify → commit
//
// The first three happen beside the running release, which serves throughout; they are not
// recorded, since doing them again is all a restarted agent needs. From pre_stop on, the step
// to run next is recorded in apps/APP/run.json (written whole to a temporary file and renamed,
// 0600) before it runs, and an agent that restarts goes on from there: a step is safe to run
// twice. A restart that finds post_start, verify or commit next goes back to start, which
// adopts the running processes (same pids) and verifies them again.
//
// A failure from stop on is rolled back through the same steps, from the failing release to
// the one before it (or to none, for a first install): run.json then records the failure, which
// keeps the agent from trying that release again until the desired state changes.
const runFile = "run.json"

// The steps of an install, in order.
const (
	stepDownload    = "download"
	stepUnpack      = "unpack"
	stepPostInstall = "post_install"
	stepPreStop     = "pre_stop"
	stepStop        = "stop"
	stepSwitch      = "switch"
	stepStart       = "start"
	stepPostStart   = "post_start"
	stepVerify      = "verify"
	stepCommit      = "commit"
)

// Steps lists the steps of an install in order: the names Config.Fault is called with.
func Steps() []string {
	return []string{stepDownload, stepUnpack, stepPostInstall, stepPreStop, stepStop, stepSwitch,
		stepStart, stepPostStart, stepVerify, stepCommit}
}

// stepState is the app state reported while step runs. Commit ends the verification: were it
// reported as starting, a deploy would be seen going from verifying back to starting before it
// runs.
func stepState(step string) string {
	switch step {
	case stepDownload:
		return api.AppStateDownloading
	case stepUnpack, stepPostInstall:
		return api.AppStateInstalling
	case stepVerify, stepCommit:
		return api.AppStateVerifying
	default:
		return api.AppStateStarting
	}
}

// runState is what run.json holds.
type runState struct {
	// Step is the step to run next; empty when no change is under way.
	Step string `json:"step,omitempty"`
	// From and To are the release directories moved from and to; "" is no release.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Target is the assignment the change installs; on the way back, the one that failed.
	Target      api.Assignment `json:"target"`
	RollingBack bool           `json:"rolling_back,omitempty"`
	// Failure says why the last release tried did not stay: it is not tried again while it is
	// the assigned one.
	Failure *runFailure `json:"failure,omitempty"`
	// Ports are the ports given to the app's named ports, by name, kept across releases.
	Ports map[string]int `json:"ports,omitempty"`
	// Restarted is the count of operator restarts (api.Assignment.Restarts) carried out.
	Restarted int64 `json:"restarted,omitempty"`
}

type runFailure struct {
	Assignment api.Assignment `json:"assignment"`
	State      string         `json:"state"` // api.AppStateRolledBack or api.AppStateFailed
	Error      string         `json:"error"`
	LogTail    string         `json:"log_tail,omitempty"`
}

// appRun is one app on the node: its supervisor, its durable state and what the report needs.
type appRun struct {
	name     string
	dir      string
	sup      *supervise.Supervisor
	stopFeed func()

	// Guarded by Agent.runMu; only the reconcile goroutine writes them.
	st      runState
	phase   string       // the app state while a change is under way, "" when none is
	cur     *releaseInfo // the release whose processes run; nil when none do
	stopped bool         // an operator stopped the app (api.Assignment.Stopped)

	watch *procWatch // the new release's processes, from start to verify (reconcile only)
}

// stepError is a failed step, with the log that tells why.
type stepError struct {
	step string
	err  error
	tail string
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }

// app returns the app's run, opening its supervisor (which finds the processes an earlier
// agent left) the first time.
func (a *Agent) app(name string) (*appRun, error) {
	a.runMu.Lock()
	r := a.runs[name]
	a.runMu.Unlock()
	if r != nil {
		return r, nil
	}
	dir := a.inst.appDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var st runState
	if err := readJSON(filepath.Join(dir, runFile), &st); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is damaged (%v); move it away to start afresh", filepath.Join(dir, runFile), err)
	}
	sup, err := supervise.Open(supervise.Config{StateDir: filepath.Join(dir, "supervise"), LogDir: filepath.Join(dir, "logs"),
		Clock: a.clk, Logger: a.log.With("app", name)})
	if err != nil {
		return nil, err
	}
	changes, cancel := sup.Subscribe()
	r = &appRun{name: name, dir: dir, sup: sup, stopFeed: cancel, st: st}
	go func() {
		for st := range changes {
			// The steps between (starting, stopping) are not worth a report of their own: the
			// server bounds how often a node may report.
			if st.State != supervise.Starting && st.State != supervise.Stopping {
				a.refresh()
			}
		}
	}()
	a.runMu.Lock()
	a.runs[name] = r
	a.runMu.Unlock()
	return r, nil
}

// closeApps stops supervising, leaving every process running for the next agent to adopt, or
// stopping them all when the agent was told to (Config.StopOnExit).
func (a *Agent) closeApps() {
	a.runMu.Lock()
	runs := a.runs
	a.runs = map[string]*appRun{}
	a.runMu.Unlock()
	for _, r := range runs {
		if a.cfg.StopOnExit {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := a.stopAll(ctx, r, nil); err != nil {
				a.log.Warn("stop app on exit", "app", r.name, "err", err)
			}
			cancel()
		}
		r.stopFeed()
		if err := r.sup.Close(); err != nil {
			a.log.Warn("close supervisor", "app", r.name, "err", err)
		}
	}
}

// state returns a copy of r's durable state.
func (a *Agent) state(r *appRun) runState {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	return r.st
}

// update changes r's durable state and writes it before anything else happens.
func (a *Agent) update(r *appRun, f func(*runState)) error {
	a.runMu.Lock()
	f(&r.st)
	st := r.st
	a.runMu.Unlock()
	return saveJSON(filepath.Join(r.dir, runFile), st)
}

// setPhase sets the app state reported while a change is under way ("" once none is).
func (a *Agent) setPhase(r *appRun, phase string) {
	a.runMu.Lock()
	changed := r.phase != phase
	r.phase = phase
	a.runMu.Unlock()
	if changed {
		a.refresh()
	}
}

func (a *Agent) setCurrent(r *appRun, rel *releaseInfo) {
	a.runMu.Lock()
	r.cur = rel
	a.runMu.Unlock()
}

// fault calls the test hook before a step.
func (a *Agent) fault(app, step string) error {
	if a.cfg.Fault != nil {
		return a.cfg.Fault(app, step)
	}
	return nil
}

// deploy moves the app to the assigned release. A failure before anything is stopped is
// returned (the caller retries those that may mend) unless it is the post_install hook's,
// which is recorded as the release's failure; from the stop on, a failure rolls back.
func (a *Agent) deploy(ctx context.Context, r *appRun, as api.Assignment) error {
	defer a.setPhase(r, "")
	from := a.inst.currentDir(as.App)
	a.setPhase(r, api.AppStateDownloading)
	if err := a.fault(as.App, stepDownload); err != nil {
		return err
	}
	name, err := a.inst.prepare(ctx, as, func() error {
		a.setPhase(r, api.AppStateInstalling)
		return a.fault(as.App, stepUnpack)
	})
	if err != nil {
		return err
	}
	rel, err := a.release(r, name)
	if err != nil {
		return permanent("%v", err)
	}
	if err := a.fault(as.App, stepPostInstall); err != nil {
		return err
	}
	if err := a.hook(ctx, r, rel, stepPostInstall, rel.m.Hooks.PostInstall); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f := &runFailure{Assignment: as, State: api.AppStateFailed, Error: reportable(stepPostInstall + ": " + err.Error()), LogTail: a.hookTail(r)}
		a.log.Error("post_install hook failed; the running release stays", "app", as.App, "version", as.Version, "err", err)
		return a.update(r, func(st *runState) { st.Failure = f })
	}
	if err := a.update(r, func(st *runState) {
		st.Step, st.From, st.To, st.Target, st.RollingBack, st.Failure = stepPreStop, from, name, as, false, nil
	}); err != nil {
		return err
	}
	return a.transition(ctx, r)
}

// transition runs the recorded change from its next step to its end, rolling back a failed one.
// It returns early, leaving the record for a later agent, when ctx ends or the fault hook says so.
func (a *Agent) transition(ctx context.Context, r *appRun) error {
	defer a.setPhase(r, "")
	for {
		st := a.state(r)
		if st.Step == "" {
			return nil
		}
		a.setPhase(r, stepState(st.Step))
		if err := a.fault(r.name, st.Step); err != nil {
			return err
		}
		next, err := a.runStep(ctx, r, st)
		if ctx.Err() != nil {
			return ctx.Err() // the agent stops: the next one runs this step again
		}
		if err != nil {
			if err := a.fail(r, st, err); err != nil {
				return err
			}
			continue
		}
		if err := a.update(r, func(s *runState) { s.Step = next }); err != nil {
			return err
		}
	}
}

// runStep runs one step of st and returns the next.
func (a *Agent) runStep(ctx context.Context, r *appRun, st runState) (string, error) {
	switch st.Step {
	case stepPreStop:
		// The release being stopped runs its own hook. A failing one is logged and the stop goes
		// on, as with Kubernetes' preStop: a broken hook must not keep its release forever.
		if st.From != "" {
			if rel, err := a.release(r, st.From); err == nil {
				if err := a.hook(ctx, r, rel, stepPreStop, rel.m.Hooks.PreStop); err != nil && ctx.Err() == nil {
					a.log.Warn("pre_stop hook failed; stopping anyway", "app", r.name, "release", st.From, "err", err)
				}
			}
		}
		return stepStop, nil
	case stepStop:
		if err := a.stopAll(ctx, r, nil); err != nil {
			return "", &stepError{step: stepStop, err: err}
		}
		return stepSwitch, nil
	case stepSwitch:
		if err := a.inst.switchTo(r.name, st.To); err != nil {
			return "", &stepError{step: stepSwitch, err: err}
		}
		if !st.RollingBack {
			a.inst.switched(st.Target, st.To, st.From)
		}
		return stepStart, nil
	case stepStart:
		if st.To == "" {
			return stepPostStart, nil
		}
		rel, err := a.release(r, st.To)
		if err != nil {
			return "", &stepError{step: stepStart, err: err}
		}
		if r.watch != nil {
			r.watch.cancel()
		}
		r.watch, err = a.startRelease(ctx, r, rel)
		if err != nil {
			return "", err
		}
		return stepPostStart, nil
	case stepPostStart:
		if st.To == "" {
			return stepVerify, nil
		}
		rel, err := a.release(r, st.To)
		if err == nil {
			err = a.hook(ctx, r, rel, stepPostStart, rel.m.Hooks.PostStart)
		}
		if err != nil {
			return "", &stepError{step: stepPostStart, err: err, tail: a.hookTail(r)}
		}
		return stepVerify, nil
	case stepVerify:
		if st.To == "" {
			return stepCommit, nil
		}
		rel, err := a.release(r, st.To)
		if err != nil {
			return "", &stepError{step: stepVerify, err: err}
		}
		if r.watch == nil {
			if r.watch, err = a.watchRelease(r, rel); err != nil {
				return "", err
			}
		}
		err = a.verify(ctx, r, rel, r.watch, st.Target)
		r.watch.cancel()
		r.watch = nil
		if err != nil {
			return "", err
		}
		return stepCommit, nil
	case stepCommit:
		if err := a.update(r, func(s *runState) {
			s.Step = ""
			if !s.RollingBack {
				s.Failure = nil
			}
			s.RollingBack = false
		}); err != nil {
			return "", err
		}
		if st.RollingBack {
			a.log.Error("rolled back", "app", r.name, "to", st.To, "failed", st.Target.Version, "err", st.Failure.Error)
		} else {
			a.log.Info("release verified and committed", "app", r.name, "version", st.Target.Version)
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown step %q in %s", st.Step, filepath.Join(r.dir, runFile))
}

// fail records that a step of st failed. Going forward, the change turns back: to the
// release before, or to none. Going back, the agent gives up: the app is failed.
func (a *Agent) fail(r *appRun, st runState, err error) error {
	se, ok := err.(*stepError)
	if !ok {
		se = &stepError{step: st.Step, err: err}
	}
	if st.RollingBack {
		f := runFailure{Assignment: st.Target, State: api.AppStateFailed}
		if st.Failure != nil {
			f = *st.Failure
			f.State = api.AppStateFailed
		}
		f.Error = reportable(f.Error + "; the way back failed too, at " + se.Error())
		a.log.Error("rollback failed", "app", r.name, "to", st.To, "err", se)
		return a.update(r, func(s *runState) { s.Step, s.RollingBack, s.Failure = "", false, &f })
	}
	f := runFailure{Assignment: st.Target, State: api.AppStateRolledBack, Error: reportable(se.Error()), LogTail: se.tail}
	if st.From == "" {
		f.State = api.AppStateFailed
	}
	a.log.Warn("release failed; rolling back", "app", r.name, "version", st.Target.Version, "to", st.From, "err", se)
	return a.update(r, func(s *runState) {
		s.Step, s.From, s.To, s.RollingBack, s.Failure = stepPreStop, st.To, st.From, true, &f
	})
}

// resume brings every app the agent finds on disk back under supervision, before the server is
// reached: an interrupted change goes on from its recorded step, the current release's
// processes are adopted (or started again), and processes that no assigned app claims are
// stopped.
func (a *Agent) resume(ctx context.Context) {
	d, _ := a.Desired()
	assigned := map[string]bool{}
	for _, as := range d.Apps {
		assigned[as.App] = true
	}
	ents, _ := os.ReadDir(filepath.Join(a.cfg.DataDir, appsDir))
	for _, e := range ents {
		if !e.IsDir() || labels.CheckName("app name", e.Name()) != nil {
			continue
		}
		r, err := a.app(e.Name())
		if err != nil {
			a.log.Error("cannot supervise app", "app", e.Name(), "err", err)
			continue
		}
		if st := a.state(r); st.Step != "" {
			if slices.Contains([]string{stepPostStart, stepVerify, stepCommit}, st.Step) {
				if err := a.update(r, func(s *runState) { s.Step = stepStart }); err != nil {
					a.log.Error("resume install", "app", r.name, "err", err)
					continue
				}
			}
			a.log.Info("resuming an interrupted install", "app", r.name, "step", st.Step, "to", st.To, "rolling_back", st.RollingBack)
			if err := a.transition(ctx, r); err != nil {
				a.log.Warn("resume install", "app", r.name, "err", err)
			}
			continue
		}
		var claim *releaseInfo
		if cur := a.inst.currentDir(r.name); cur != "" && (d.Generation == 0 || assigned[r.name]) {
			if claim, err = a.release(r, cur); err != nil {
				a.log.Error("current release unreadable; not running it", "app", r.name, "err", err)
			}
		}
		if claim == nil {
			if err := a.stopAll(ctx, r, nil); err != nil {
				a.log.Warn("stop unclaimed processes", "app", r.name, "err", err)
			}
			continue
		}
		w, err := a.startRelease(ctx, r, claim)
		if err != nil {
			a.log.Error("start current release", "app", r.name, "err", err)
			continue
		}
		w.cancel()
	}
	a.refresh()
}

// loadManifest reads an unpacked release's manifest.
func loadManifest(dir string) (*release.Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, release.ManifestName))
	if err != nil {
		return nil, err
	}
	return release.ParseManifest(b)
}
