package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/supervise"
)

// releaseInfo is an unpacked release as its processes, hooks and checks need it.
type releaseInfo struct {
	name    string // directory name under releases/
	dir     string // absolute path: the working directory of its processes and hooks
	version string
	m       *release.Manifest
	ports   map[string]int
	vars    map[string]string // FERRY_PORT_<NAME>, for ${...} in commands and checks
}

// release reads an unpacked release of r and gives its named ports their numbers, recorded
// in run.json before any process or hook can see them.
func (a *Agent) release(r *appRun, name string) (*releaseInfo, error) {
	dir, err := filepath.Abs(filepath.Join(r.dir, "releases", name))
	if err != nil {
		return nil, err
	}
	m, err := loadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", name, err)
	}
	var info installed
	if err := readJSON(dir+".json", &info); err != nil {
		return nil, fmt.Errorf("release %s: %w", name, err)
	}
	a.runMu.Lock()
	have := r.st.Ports
	taken := map[int]bool{}
	for _, o := range a.runs {
		if o != r {
			for _, n := range o.st.Ports {
				taken[n] = true
			}
		}
	}
	a.runMu.Unlock()
	p, err := ports(m, have, taken, a.claims.claim)
	if err != nil {
		return nil, err
	}
	changed := false
	for k, v := range p {
		changed = changed || have[k] != v
	}
	if changed {
		if err := a.update(r, func(st *runState) {
			if st.Ports == nil {
				st.Ports = map[string]int{}
			}
			maps.Copy(st.Ports, p)
		}); err != nil {
			return nil, err
		}
	}
	return &releaseInfo{name: name, dir: dir, version: info.Version, m: m, ports: p, vars: portVars(p)}, nil
}

// specs are the supervisor's specs of rel's processes on node.
func (rel *releaseInfo) specs(node, app string) ([]supervise.Spec, error) {
	var out []supervise.Spec
	for _, p := range rel.m.Processes {
		cmd, err := expandAll(p.Command, rel.vars)
		if err != nil {
			return nil, fmt.Errorf("process %s: %v", p.Name, err)
		}
		env, err := environ(node, app, rel.version, rel.ports, p.Env)
		if err != nil {
			return nil, fmt.Errorf("process %s: %v", p.Name, err)
		}
		user := p.User
		if os.Geteuid() != 0 {
			user = "" // only root can become another user; the manifest's user applies where it can
		}
		grace := time.Duration(p.StopGrace)
		if grace == 0 {
			grace = time.Nanosecond // the supervisor reads zero as its default
		}
		out = append(out, supervise.Spec{
			Name: p.Name, Command: cmd, Dir: rel.dir, Env: env, User: user, StopGrace: grace,
			Restart: supervise.Restart{Burst: p.Restart.Burst, Window: time.Duration(p.Restart.Window), MaxBackoff: time.Duration(p.Restart.BackoffMax)},
		})
	}
	return out, nil
}

// startRelease starts rel's processes, or adopts them where an earlier agent left them running
// from the same spec, and stops whatever else the app's supervisor runs. The watch it returns
// has seen every change since before the first start.
func (a *Agent) startRelease(ctx context.Context, r *appRun, rel *releaseInfo) (*procWatch, error) {
	specs, err := rel.specs(a.Name(), r.name)
	if err != nil {
		return nil, &stepError{step: stepStart, err: err}
	}
	w := newWatch(r.sup, rel)
	a.setCurrent(r, rel)
	for _, s := range specs {
		if st, ok := r.sup.Status(s.Name); ok && st.State != supervise.Stopped {
			w.see(st) // started in this agent's life already: watched from how it runs now
			continue
		}
		if err := r.sup.Start(ctx, s); err != nil {
			w.cancel()
			tail, _ := r.sup.Tail(s.Name, 50)
			return nil, &stepError{step: stepStart, err: err, tail: logTail(tail)}
		}
	}
	if err := a.stopAll(ctx, r, rel); err != nil {
		a.log.Warn("stop processes the release does not name", "app", r.name, "err", err)
	}
	return w, nil
}

// watchRelease watches rel's processes as they run now.
func (a *Agent) watchRelease(r *appRun, rel *releaseInfo) (*procWatch, error) {
	w := newWatch(r.sup, rel)
	for _, p := range rel.m.Processes {
		st, ok := r.sup.Status(p.Name)
		if !ok {
			w.cancel()
			return nil, &stepError{step: stepVerify, err: fmt.Errorf("process %s is not supervised", p.Name)}
		}
		if err := w.see(st); err != nil {
			w.cancel()
			return nil, a.procError(r, stepVerify, st.Name, err)
		}
	}
	return w, nil
}

// stopAll stops every process of r's supervisor, running or left by an earlier agent, except
// those keep names.
func (a *Agent) stopAll(ctx context.Context, r *appRun, keep *releaseInfo) error {
	kept := map[string]bool{}
	if keep != nil {
		for _, p := range keep.m.Processes {
			kept[p.Name] = true
		}
	} else {
		a.setCurrent(r, nil)
	}
	for _, st := range r.sup.List() {
		if !kept[st.Name] && st.State != supervise.Stopped {
			if err := r.sup.Stop(ctx, st.Name); err != nil {
				return err
			}
		}
	}
	for _, name := range r.sup.Unclaimed() {
		if !kept[name] {
			if err := r.sup.Stop(ctx, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// procWatch follows a release's processes from their start: the first pid each runs with is
// its own, and any other change (a death, a restart) means it did not stay up.
type procWatch struct {
	ch     <-chan supervise.Status
	cancel func()
	names  map[string]bool
	pids   map[string]int
	// restarts is each process's restart count when the watch first saw it: a process that
	// dies while still starting is started again with a higher count, before it is ever
	// running, and that fails the verify as much as a death once running.
	restarts map[string]int
}

func newWatch(sup *supervise.Supervisor, rel *releaseInfo) *procWatch {
	ch, cancel := sup.Subscribe()
	w := &procWatch{ch: ch, cancel: cancel, names: map[string]bool{}, pids: map[string]int{}, restarts: map[string]int{}}
	for _, p := range rel.m.Processes {
		w.names[p.Name] = true
	}
	return w
}

// see takes one change in; an error when it shows that a watched process did not stay up.
func (w *procWatch) see(st supervise.Status) error {
	if !w.names[st.Name] {
		return nil
	}
	if base, ok := w.restarts[st.Name]; !ok {
		w.restarts[st.Name] = st.Restarts
	} else if st.Restarts > base && (st.State == supervise.Starting || st.State == supervise.Running) {
		return fmt.Errorf("process %s exited (%s) and was started again", st.Name, st.LastExit)
	}
	switch st.State {
	case supervise.Starting:
		return nil
	case supervise.Running:
		if pid, ok := w.pids[st.Name]; ok && pid != st.Pid {
			return fmt.Errorf("process %s exited (%s) and was started again", st.Name, st.LastExit)
		}
		w.pids[st.Name] = st.Pid
		return nil
	}
	if st.Error != "" {
		return fmt.Errorf("process %s did not start: %s", st.Name, st.Error)
	}
	return fmt.Errorf("process %s exited (%s)", st.Name, st.LastExit)
}

// procError is a step's failure through process name, with the end of its log.
func (a *Agent) procError(r *appRun, step, name string, err error) *stepError {
	tail, _ := r.sup.Tail(name, 50)
	return &stepError{step: step, err: err, tail: logTail(tail)}
}

// describe fills in na's state, processes and ports from r; the caller holds runMu.
func describe(r *appRun, na *api.NodeApp) {
	names := map[string]bool{}
	if r.cur != nil {
		for _, p := range r.cur.m.Processes {
			names[p.Name] = true
		}
		if len(r.cur.ports) > 0 {
			na.Ports = maps.Clone(r.cur.ports)
		}
	}
	crashloop := false
	for _, st := range r.sup.List() {
		if !names[st.Name] && st.State == supervise.Stopped {
			continue
		}
		crashloop = crashloop || (names[st.Name] && st.State == supervise.Crashloop)
		na.Processes = append(na.Processes, processState(st))
	}
	na.Restarted = r.st.Restarted
	switch {
	case r.phase != "":
		na.State = r.phase
	case r.stopped:
		na.State = api.AppStateStopped
	case r.cur == nil:
	case len(names) == 0:
		na.State = api.AppStateStopped
	case crashloop:
		na.State = api.AppStateCrashloop
	default:
		na.State = api.AppStateRunning
	}
}

func processState(st supervise.Status) api.ProcessState {
	ps := api.ProcessState{Name: st.Name, State: string(st.State), PID: st.Pid, Restarts: st.Restarts}
	if !st.Started.IsZero() {
		t := st.Started.UTC()
		ps.Started = &t
	}
	if ex := st.LastExit; !ex.Time.IsZero() {
		pe := &api.ProcessExit{Time: ex.Time.UTC()}
		switch {
		case !ex.Known:
		case ex.Signal != 0:
			pe.Signal = ex.Signal.String()
		default:
			code := ex.Code
			pe.Code = &code
		}
		ps.LastExit = pe
	}
	return ps
}
