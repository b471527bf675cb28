package supervise

import (
	"log/slog"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/clock"
	"golang.org/x/sys/unix"
)

// proc is one supervised process: a loop (run) that starts it, waits for its end and starts it
// again, and takes stop and restart commands.
type proc struct {
	s    *Supervisor
	spec Spec
	fp   string // spec's fingerprint
	prog string // the program Command[0] resolved to
	cred *syscall.Credential
	log  *slog.Logger
	cmds chan command
	done chan struct{} // closed when run returns

	// Guarded by s.mu; only run writes them.
	st    Status
	ticks uint64 // start time of the running process, in ticks since boot
	// lastStart is when the last run (or failed start) began, for the restart policy.
	lastStart time.Time
	hist      history
}

// command asks a process's loop to stop, or to restart, and is done when that is.
type command struct {
	restart bool
	done    chan struct{}
}

// instance is one run of a process, started here or adopted.
type instance struct {
	pid     int
	ticks   uint64
	started time.Time
	adopted bool
	// exit receives how the run ended, once.
	exit chan Exit
	// signal signals the leader through a handle that cannot reach a later process with the
	// same pid.
	signal func(syscall.Signal) error
	// unwatch ends the wait for an adopted process's end; nil for a child.
	unwatch func()
}

// outcome is how the supervision of one instance ended.
type outcome int

const (
	died outcome = iota
	stopped
	restarted
	closing
)

// run supervises p until it is stopped or the supervisor closes. lo is what the state file
// held under p's name, if anything; ready is closed once the first process runs or its start
// failed.
func (p *proc) run(lo *leftover, ready chan struct{}) {
	defer p.s.wg.Done()
	defer close(p.done)
	defer func() {
		if ready != nil { // closing before the first start: Start must not wait on
			close(ready)
		}
	}()
	var inst *instance
	if lo != nil && lo.pidfd != nil {
		if lo.rec.Spec == p.fp {
			inst = adoptedInstance(p.s.clk, p.log, lo.rec, lo.pidfd)
			p.running(inst, true)
			p.log.Info("adopted running process", "pid", inst.pid)
		} else {
			p.log.Info("stopping the process an earlier supervisor ran from another spec", "pid", lo.rec.Pid)
			if _, ok := p.s.terminate(adoptedInstance(p.s.clk, p.log, lo.rec, lo.pidfd), p.spec.StopGrace); !ok {
				return
			}
		}
	}
	var pending []command // restarts to answer once the new process runs
	answer := func() {
		if ready != nil {
			close(ready)
			ready = nil
		}
		for _, c := range pending {
			close(c.done)
		}
		pending = nil
	}
	for {
		if inst == nil {
			inst = p.start()
		}
		answer()
		if inst != nil {
			switch out, c := p.watch(inst); out {
			case closing:
				return
			case stopped:
				p.stopped(c)
				return
			case restarted:
				inst, pending = nil, append(pending, c)
				continue
			}
			inst = nil
		}
		// The process died, or did not start.
		now := p.s.clk.Now()
		p.s.mu.Lock()
		wait, crashloop := p.spec.Restart.afterDeath(&p.hist, p.lastStart, now)
		p.s.mu.Unlock()
		if wait > 0 {
			state := Backoff
			if crashloop {
				state = Crashloop
			}
			t := p.s.clk.NewTimer(wait) // set before the change is told, so the wait has begun
			p.update(func(st *Status) { st.State, st.Retry = state, now.Add(wait) })
			p.persist()
			p.log.Info("process will be started again", "state", state, "in", wait)
			select {
			case <-t.C():
			case c := <-p.cmds:
				t.Stop()
				if !c.restart {
					p.stopped(c)
					return
				}
				pending = append(pending, c)
				p.s.mu.Lock()
				p.hist = history{}
				p.s.mu.Unlock()
				continue // an operator's restart is not counted
			case <-p.s.quit:
				t.Stop()
				return
			}
		}
		p.s.mu.Lock()
		p.hist.restarted(p.s.clk.Now(), p.spec.Restart.Burst)
		p.st.Restarts++
		p.s.mu.Unlock()
	}
}

// watch waits for inst to end, or for a command or the supervisor's close.
func (p *proc) watch(inst *instance) (outcome, command) {
	// A try in crashloop that lasts a whole window ends crashloop.
	var proven <-chan time.Time
	p.s.mu.Lock()
	if p.hist.crashloop {
		t := p.s.clk.NewTimer(p.spec.Restart.Window)
		defer t.Stop()
		proven = t.C()
	}
	p.s.mu.Unlock()
	for {
		select {
		case ex := <-inst.exit:
			p.ended(inst, ex)
			return died, command{}
		case c := <-p.cmds:
			p.update(func(st *Status) { st.State = Stopping })
			ex, ok := p.s.terminate(inst, p.spec.StopGrace)
			if !ok {
				return closing, command{}
			}
			p.ended(inst, ex)
			if c.restart {
				p.s.mu.Lock()
				p.hist = history{}
				p.s.mu.Unlock()
				return restarted, c
			}
			return stopped, c
		case <-proven:
			proven = nil
			p.s.mu.Lock()
			p.hist.crashloop = false
			p.s.mu.Unlock()
			p.update(func(st *Status) { st.State = Running })
		case <-p.s.quit:
			if inst.unwatch != nil {
				inst.unwatch()
			}
			return closing, command{}
		}
	}
}

// start starts a new process; nil when that failed (recorded in the status).
func (p *proc) start() *instance {
	inst, err := spawn(p.s.clk, p.s.cfg.LogDir, p.spec, p.prog, p.cred)
	if err != nil {
		p.log.Warn("process did not start", "err", err)
		// Published with the backoff or the next start that follows at once.
		p.s.mu.Lock()
		p.lastStart, p.st.Error = p.s.clk.Now(), err.Error()
		p.s.mu.Unlock()
		return nil
	}
	p.running(inst, false)
	return inst
}

// running records that inst runs, and persists it.
func (p *proc) running(inst *instance, adopted bool) {
	p.s.mu.Lock()
	state := Running
	if p.hist.crashloop {
		state = Crashloop
	}
	p.ticks, p.lastStart = inst.ticks, inst.started
	p.s.mu.Unlock()
	p.update(func(st *Status) {
		st.State, st.Pid, st.Started, st.Adopted, st.Retry, st.Error = state, inst.pid, inst.started, adopted, time.Time{}, ""
	})
	p.persist()
}

// ended records how inst ended, and kills what is left of its process group: a service's
// leader is expected to take its children with it, and leftovers would hold its ports and
// files against the next start. The change is published with the state that follows (a new
// pid, backoff, crashloop or stopped), not on its own.
func (p *proc) ended(inst *instance, ex Exit) {
	killGroup(inst.pid, unix.SIGKILL)
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	p.ticks = 0
	p.st.Pid, p.st.Started, p.st.Adopted, p.st.LastExit = 0, time.Time{}, false, ex
	p.log.Info("process ended", "pid", inst.pid, "how", ex.String())
}

// stopped records that p was stopped and answers c.
func (p *proc) stopped(c command) {
	p.update(func(st *Status) { st.State, st.Pid, st.Started, st.Retry = Stopped, 0, time.Time{}, time.Time{} })
	p.persist()
	close(c.done)
}

// update changes p's status under the lock and publishes the result.
func (p *proc) update(f func(*Status)) {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	f(&p.st)
	p.s.feed.publish(p.st)
}

func (p *proc) persist() {
	if err := p.s.persist(); err != nil {
		p.log.Error("state not saved: the process may not be adopted after a restart", "err", err)
	}
}

// terminate stops inst: SIGTERM to its group, SIGKILL after grace, and returns how it ended
// once its leader is gone. What is left of the group is then killed. It gives up, false, when
// the supervisor closes first.
func (s *Supervisor) terminate(inst *instance, grace time.Duration) (Exit, bool) {
	signalGroup(inst, unix.SIGTERM)
	t := s.clk.NewTimer(grace)
	defer t.Stop()
	var ex Exit
	select {
	case ex = <-inst.exit:
	case <-t.C():
		signalGroup(inst, unix.SIGKILL)
		select {
		case ex = <-inst.exit:
		case <-s.quit:
			return Exit{}, false
		}
	case <-s.quit:
		return Exit{}, false
	}
	killGroup(inst.pid, unix.SIGKILL)
	return ex, true
}

// signalGroup signals inst's process group, and its leader through its handle in case the
// leader has left the group.
func signalGroup(inst *instance, sig syscall.Signal) {
	killGroup(inst.pid, sig)
	inst.signal(sig)
}

// killGroup signals the process group pgid; a group that no longer exists is not an error.
func killGroup(pgid int, sig syscall.Signal) {
	unix.Kill(-pgid, sig)
}

// spawn starts spec's process, in a process group of its own, writing to its log file.
func spawn(clk clock.Clock, logDir string, spec Spec, prog string, cred *syscall.Credential) (*instance, error) {
	out, err := openLog(logDir, spec.Name)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own descriptor
	env := spec.Env
	if env == nil {
		env = []string{} // nil would pass on the supervisor's environment
	}
	cmd := &exec.Cmd{
		Path: prog, Args: spec.Command, Env: env, Dir: spec.Dir,
		Stdout: out, Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: cred},
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	// The child cannot be reaped before Wait, so its stat is there, with its start time.
	ps, err := readStat(pid)
	if err != nil {
		killGroup(pid, unix.SIGKILL)
		cmd.Wait()
		return nil, err
	}
	inst := &instance{
		pid: pid, ticks: ps.Start, started: clk.Now(), exit: make(chan Exit, 1),
		signal: func(sig syscall.Signal) error { return cmd.Process.Signal(sig) },
	}
	go func() {
		cmd.Wait()
		ex := Exit{Time: clk.Now(), Code: cmd.ProcessState.ExitCode(), Known: true}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ex.Signal = ws.Signal()
		}
		inst.exit <- ex
	}()
	return inst, nil
}

// adoptedInstance watches a process that an earlier supervisor started, through its pidfd,
// which it takes over. Only its end can be seen: its exit status goes to its parent.
func adoptedInstance(clk clock.Clock, log *slog.Logger, rec record, pidfd *os.File) *instance {
	var unwatched atomic.Bool
	inst := &instance{
		pid: rec.Pid, ticks: rec.StartTicks, started: rec.Started, adopted: true,
		exit:   make(chan Exit, 1),
		signal: func(sig syscall.Signal) error { return signalPidfd(pidfd, sig) },
		unwatch: func() {
			unwatched.Store(true)
			pidfd.Close()
		},
	}
	go func() {
		defer pidfd.Close()
		if err := waitPidfd(pidfd); err != nil {
			// A failure to wait is never taken for the process's end, which would start a
			// second copy of the service.
			if !unwatched.Load() {
				log.Error("cannot watch adopted process; its end will go unnoticed", "pid", rec.Pid, "err", err)
			}
			return
		}
		inst.exit <- Exit{Time: clk.Now(), Code: -1}
	}()
	return inst
}
