// Package supervise keeps a node's service processes running: each in its own process group,
// with its environment, working directory and user, its output written by the process itself
// to size-capped log files that the supervisor rotates; a process that dies is restarted at
// once, then with exponential backoff on the injected clock, and is reported in crashloop when
// it keeps dying. Processes outlive their supervisor: a new Supervisor on the same state
// directory adopts those still running (identified by pid and start time, so a reused pid is
// never adopted) instead of starting them again. It knows nothing of the server or its API;
// the agent tells it what to run.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// Config configures a Supervisor.
type Config struct {
	// StateDir holds the state file (state.json) and the lock that keeps a second supervisor
	// off it. Created (0700) when missing.
	StateDir string
	// LogDir holds the processes' log files, NAME.log and its older generations. Created
	// (0750) when missing.
	LogDir string
	// Clock drives restart backoff, stop grace and rotation; default the wall clock.
	Clock clock.Clock
	// Logger receives the supervisor's own messages; default: discarded.
	Logger *slog.Logger
	// RotateEvery is how often log sizes are checked for rotation; default 10 s.
	RotateEvery time.Duration
}

// DefaultRotateEvery is the default of Config.RotateEvery.
const DefaultRotateEvery = 10 * time.Second

// State is where a supervised process stands.
type State string

const (
	// Starting: Start has been called and the first process is not yet up.
	Starting State = "starting"
	// Running: the process runs.
	Running State = "running"
	// Backoff: the process died and waits to be started again (Status.Retry says when).
	Backoff State = "backoff"
	// Crashloop: the process died Restart.Burst times within Restart.Window. It is tried again
	// every Restart.MaxBackoff; while a try runs, Pid is set, and the state stays crashloop until
	// the try has run for a whole window.
	Crashloop State = "crashloop"
	// Stopping: Stop sent SIGTERM and waits for the process to end.
	Stopping State = "stopping"
	// Stopped: the process was stopped and is not restarted; Start runs it again.
	Stopped State = "stopped"
)

// Status is a supervised process as it stands.
type Status struct {
	Name  string
	State State
	// Pid is the running process's id (its process group has the same id); 0 when none runs.
	Pid int
	// Started is when the running process started; zero when none runs.
	Started time.Time
	// Restarts counts the starts after a death, over the process's supervised life: carried
	// across adoption, and counting a death that happened while no supervisor ran. Start,
	// Restart and Stop do not count.
	Restarts int
	// Adopted says the running process was started by an earlier supervisor.
	Adopted bool
	// LastExit is how the last run ended; its Time is zero when none has ended yet.
	LastExit Exit
	// Retry is when the next start is due, in backoff and crashloop; zero otherwise.
	Retry time.Time
	// Error says why the last start failed, if it did; empty after a start that worked.
	Error string
}

// Exit is how a run ended.
type Exit struct {
	Time time.Time
	// Code is the exit code; -1 when a signal ended the process or when it is not known.
	Code int
	// Signal is the signal that ended the process, if one did.
	Signal syscall.Signal
	// Known is false when the supervisor saw the end but not how: an adopted process is not
	// its child, so its exit status goes to another parent.
	Known bool
}

func (e Exit) String() string {
	switch {
	case e.Time.IsZero():
		return "not ended"
	case !e.Known:
		return "ended (exit status unknown: the process was adopted, not started, by this supervisor)"
	case e.Signal != 0:
		return fmt.Sprintf("killed by signal %d (%v)", int(e.Signal), e.Signal)
	default:
		return fmt.Sprintf("exit code %d", e.Code)
	}
}

// Supervisor runs and watches processes. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg  Config
	clk  clock.Clock
	log  *slog.Logger
	boot string
	lock *os.File
	quit chan struct{} // closed by Close: loops end, processes keep running
	wg   sync.WaitGroup
	feed feed

	writeMu  sync.Mutex // serializes state file writes
	rotateMu sync.Mutex // one rotation at a time

	mu     sync.Mutex
	closed bool
	procs  map[string]*proc
	// found holds the processes of the state file that no Start has claimed yet.
	found map[string]*leftover
}

// leftover is a process of the state file that no Start has claimed yet.
type leftover struct {
	rec   record
	pidfd *os.File // nil when the recorded process no longer runs
	// died says a process was recorded running but has ended since: starting it again is a
	// restart.
	died bool
}

// Open starts a supervisor on cfg.StateDir. Processes that the state file records and that
// still run (same pid, same start time, same boot) wait there to be adopted: Start with the
// same Spec adopts one instead of starting it, and Unclaimed lists those no Start has claimed.
func Open(cfg Config) (*Supervisor, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("supervise: process supervision needs Linux (pidfd, /proc)")
	}
	if cfg.StateDir == "" || cfg.LogDir == "" {
		return nil, errors.New("supervise: a state directory and a log directory are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RotateEvery == 0 {
		cfg.RotateEvery = DefaultRotateEvery
	}
	if cfg.RotateEvery < time.Second || cfg.RotateEvery > 24*time.Hour {
		return nil, fmt.Errorf("supervise: rotation check every %v: want between 1s and 24h", cfg.RotateEvery)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.LogDir, 0o750); err != nil {
		return nil, err
	}
	boot, err := bootID()
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := readState(cfg.StateDir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s := &Supervisor{
		cfg: cfg, clk: cfg.Clock, log: cfg.Logger, boot: boot, lock: lock,
		quit: make(chan struct{}), procs: map[string]*proc{}, found: map[string]*leftover{},
	}
	for name, rec := range st.Processes {
		lo := &leftover{rec: rec}
		if rec.Pid != 0 && st.Boot == boot {
			lo.pidfd, err = identify(rec)
			if err != nil {
				lo.died = true
				s.log.Info("recorded process is gone; it will be started again", "process", name, "pid", rec.Pid, "why", err)
			}
		}
		if lo.pidfd == nil {
			lo.rec.Pid, lo.rec.StartTicks, lo.rec.Started = 0, 0, time.Time{}
		}
		s.found[name] = lo
	}
	if err := s.persist(); err != nil {
		s.closeFound()
		lock.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.rotateLoop()
	return s, nil
}

// identify opens a pidfd on the process a record names, if that very process still runs: the
// pid must belong to a live process that started at the recorded time. The pidfd is opened
// first, so the process checked is the one it holds.
func identify(rec record) (*os.File, error) {
	f, err := openPidfd(rec.Pid)
	if err != nil {
		return nil, err
	}
	ps, err := readStat(rec.Pid)
	switch {
	case err != nil:
	case ps.dead():
		err = errNoProcess
	case ps.Start != rec.StartTicks:
		err = fmt.Errorf("pid %d now belongs to another process (started at tick %d, not %d)", rec.Pid, ps.Start, rec.StartTicks)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Start supervises the process spec describes, and returns once it is running, or once its
// first start failed (it is then retried per spec.Restart; Status says why it failed). When
// the state file holds a process of that name started from the same Spec and still running,
// Start adopts it instead; when one runs from another Spec, Start stops it first. A Spec that
// is invalid, names a program that cannot be found, or a user the supervisor cannot become is
// refused. A process that is already supervised is refused unless it is Stopped. When ctx ends
// first, Start returns its error and the process stays supervised.
func (s *Supervisor) Start(ctx context.Context, spec Spec) error {
	spec = spec.withDefaults()
	if err := spec.validate(); err != nil {
		return err
	}
	cred, err := credential(spec.Name, spec.User, os.Geteuid())
	if err != nil {
		return err
	}
	prog, err := spec.resolve()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("supervise: supervisor is closed")
	}
	var history history
	restarts := 0
	if old := s.procs[spec.Name]; old != nil {
		if old.st.State != Stopped {
			s.mu.Unlock()
			return fmt.Errorf("process %s is already supervised (%s); stop it first, or restart it", spec.Name, old.st.State)
		}
		restarts, history = old.st.Restarts, old.hist
	}
	lo := s.found[spec.Name]
	delete(s.found, spec.Name)
	p := &proc{
		s: s, spec: spec, fp: spec.fingerprint(), prog: prog, cred: cred,
		log:  s.log.With("process", spec.Name),
		cmds: make(chan command), done: make(chan struct{}),
		st:   Status{Name: spec.Name, State: Starting, Restarts: restarts},
		hist: history,
	}
	if lo != nil {
		p.st.Restarts = lo.rec.Restarts
		if lo.died {
			p.st.Restarts++
		}
	}
	s.procs[spec.Name] = p
	s.feed.publish(p.st)
	s.wg.Add(1) // under s.mu, so that Close waits for this loop too
	s.mu.Unlock()

	ready := make(chan struct{})
	go p.run(lo, ready)
	select {
	case <-ready:
		return nil
	case <-s.quit:
		return errors.New("supervise: supervisor closed during the start")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops a process: SIGTERM to its process group, then, if its leader has not ended
// within the Spec's StopGrace, SIGKILL to the group. It returns once the leader is gone; what
// is left of the group then is killed too. The process stays listed as Stopped, and is no
// longer in the state file. Stop also stops an unclaimed process of the state file (with the
// default grace). When ctx ends first, Stop returns its error and the stop goes on.
func (s *Supervisor) Stop(ctx context.Context, name string) error {
	return s.command(ctx, name, false)
}

// Restart stops a process as Stop does (or ends its backoff) and starts it again, with its
// restart history cleared: an operator's restart takes a process out of crashloop at once. It
// returns once the new process is running, or its start failed.
func (s *Supervisor) Restart(ctx context.Context, name string) error {
	return s.command(ctx, name, true)
}

// command hands a stop or restart to a process's loop and waits for it to be done.
func (s *Supervisor) command(ctx context.Context, name string, restart bool) error {
	s.mu.Lock()
	p, lo, closed := s.procs[name], s.found[name], s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return errors.New("supervise: supervisor is closed")
	case p == nil && lo != nil && !restart:
		return s.stopLeftover(ctx, name, lo)
	case p == nil && lo != nil:
		return fmt.Errorf("process %s was left by an earlier supervisor and is not supervised yet; Start it to adopt it", name)
	case p == nil:
		return fmt.Errorf("no process %s is supervised", name)
	}
	c := command{restart: restart, done: make(chan struct{})}
	select {
	case p.cmds <- c:
	case <-p.done:
		if restart {
			return fmt.Errorf("process %s is stopped; Start it", name)
		}
		return nil // stopped already
	case <-s.quit:
		return errors.New("supervise: supervisor is closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-c.done:
		return nil
	case <-s.quit:
		return errors.New("supervise: supervisor closed during the stop")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopLeftover stops a process that an earlier supervisor left and no Start has claimed.
func (s *Supervisor) stopLeftover(ctx context.Context, name string, lo *leftover) error {
	if lo.pidfd != nil {
		inst := adoptedInstance(s.clk, s.log.With("process", name), lo.rec, lo.pidfd)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, ok := s.terminate(inst, DefaultStopGrace); !ok {
				inst.unwatch()
			}
		}()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.quit:
			return errors.New("supervise: supervisor closed during the stop")
		}
	}
	s.mu.Lock()
	if s.found[name] == lo {
		delete(s.found, name)
	}
	s.mu.Unlock()
	return s.persist()
}

// Status returns a process's status.
func (s *Supervisor) Status(name string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[name]
	if p == nil {
		return Status{}, false
	}
	return p.st, true
}

// List returns the status of every supervised process, by name.
func (s *Supervisor) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, name := range slices.Sorted(maps.Keys(s.procs)) {
		out = append(out, s.procs[name].st)
	}
	return out
}

// Unclaimed lists, by name, the processes an earlier supervisor left running that no Start
// has claimed yet: the caller Starts them (to adopt them) or Stops them.
func (s *Supervisor) Unclaimed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, lo := range s.found {
		if lo.pidfd != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Subscribe returns a channel that receives a process's Status each time it changes (state,
// pid, restarts), in order, from now on, until cancel. The supervisor never waits for a
// subscriber; one that falls more than 4096 changes behind loses the oldest.
func (s *Supervisor) Subscribe() (changes <-chan Status, cancel func()) {
	return s.feed.subscribe()
}

// LogFile returns the path of a process's current log file, for following it. Rotation
// truncates the file in place: a follower that finds it shorter than where it read reads again
// from its start.
func (s *Supervisor) LogFile(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return logFile(s.cfg.LogDir, name), nil
}

// Tail returns the last n lines of a process's output (at most MaxTailLines, and at most 1 MiB),
// reaching into the rotated generations when the current file holds fewer. A process that has
// not written anything yet has an empty tail.
func (s *Supervisor) Tail(name string, n int) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return tail(s.cfg.LogDir, name, n)
}

// Rotate rotates now every supervised or unclaimed process's log that has reached its size;
// the supervisor also does so every Config.RotateEvery.
func (s *Supervisor) Rotate() error {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	s.mu.Lock()
	limits := map[string]Logs{}
	for name, p := range s.procs {
		limits[name] = p.spec.Logs
	}
	for name := range s.found {
		limits[name] = Spec{}.withDefaults().Logs
	}
	s.mu.Unlock()
	var errs []error
	for name, l := range limits {
		if _, err := rotate(s.cfg.LogDir, name, l); err != nil {
			errs = append(errs, fmt.Errorf("rotate log of %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Supervisor) rotateLoop() {
	defer s.wg.Done()
	for {
		t := s.clk.NewTimer(s.cfg.RotateEvery)
		select {
		case <-t.C():
			if err := s.Rotate(); err != nil {
				s.log.Warn("log rotation failed", "err", err)
			}
		case <-s.quit:
			t.Stop()
			return
		}
	}
}

// Close stops supervising and leaves every process running, recorded in the state file for
// the next supervisor to adopt. It waits for the supervisor's goroutines to end.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	s.wg.Wait()
	err := s.persist()
	s.closeFound()
	return errors.Join(err, s.lock.Close())
}

func (s *Supervisor) closeFound() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lo := range s.found {
		if lo.pidfd != nil {
			lo.pidfd.Close()
		}
	}
}

// persist writes the state file from what the supervisor knows now.
func (s *Supervisor) persist() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	st := state{Version: stateVersion, Boot: s.boot, Processes: map[string]record{}}
	s.mu.Lock()
	for name, lo := range s.found {
		st.Processes[name] = lo.rec
	}
	for name, p := range s.procs {
		if p.st.State == Stopped {
			continue
		}
		st.Processes[name] = record{
			Pid: p.st.Pid, StartTicks: p.ticks, Started: p.st.Started,
			Restarts: p.st.Restarts, Spec: p.fp,
		}
	}
	s.mu.Unlock()
	if err := writeState(s.cfg.StateDir, st); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}
