package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
	"golang.org/x/sys/unix"
)

// testPath is the PATH the test processes get: the shell and sleep live there.
const testPath = "PATH=/usr/bin:/bin"

// farAway keeps the rotation timer out of the way of tests that count the fake clock's timers.
const farAway = 24 * time.Hour

// ctxT returns a context that ends well before the test binary's timeout, so a missing event
// fails the test with a message instead of hanging it.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger shows the supervisor's messages in the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type dirs struct{ state, logs string }

func newDirs(t *testing.T) dirs {
	t.Helper()
	d := t.TempDir()
	return dirs{filepath.Join(d, "state"), filepath.Join(d, "logs")}
}

// open starts a supervisor on d; the test's end closes it and kills what it left running.
func open(t *testing.T, d dirs, clk clock.Clock) *Supervisor {
	t.Helper()
	s, err := Open(Config{StateDir: d.state, LogDir: d.logs, Clock: clk, RotateEvery: farAway, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		for _, st := range s.List() {
			if st.Pid != 0 {
				killGroup(st.Pid, unix.SIGKILL)
			}
		}
	})
	return s
}

func sh(name, script string, env ...string) Spec {
	return Spec{Name: name, Command: []string{"sh", "-c", script}, Env: append([]string{testPath}, env...)}
}

// sleeper is a process that runs until killed; SIGTERM ends it.
func sleeper(name string) Spec { return sh(name, "exec sleep 100000") }

// watcher follows a supervisor's changes.
type watcher struct {
	t  *testing.T
	ch <-chan Status
}

func watch(t *testing.T, s *Supervisor) *watcher {
	ch, cancel := s.Subscribe()
	t.Cleanup(cancel)
	return &watcher{t, ch}
}

// next waits for the first change of name that satisfies ok.
func (w *watcher) next(name string, ok func(Status) bool) Status {
	w.t.Helper()
	ctx := ctxT(w.t)
	for {
		select {
		case st := <-w.ch:
			if st.Name == name && ok(st) {
				return st
			}
		case <-ctx.Done():
			w.t.Fatalf("%s: the awaited change did not come", name)
		}
	}
}

func start(t *testing.T, s *Supervisor, spec Spec) Status {
	t.Helper()
	if err := s.Start(ctxT(t), spec); err != nil {
		t.Fatal(err)
	}
	st, ok := s.Status(spec.Name)
	if !ok {
		t.Fatalf("%s not listed after Start", spec.Name)
	}
	return st
}

// waitGone waits until the process pid has ended, through a pidfd.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	f, err := openPidfd(pid)
	if errors.Is(err, errNoProcess) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- waitPidfd(f) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctxT(t).Done():
		t.Fatalf("process %d did not end", pid)
	}
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	ps, err := readStat(pid)
	return err == nil && !ps.dead()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The process runs in its own process group, with exactly the environment and working
// directory given, and its stdout and stderr are its own descriptors on the log file, opened
// for appending: nothing passes through the supervisor.
func TestStartRunsProcessAsSpecified(t *testing.T) {
	d := newDirs(t)
	s := open(t, d, clock.NewFake(time.Unix(1e9, 0)))
	dir := t.TempDir()
	ready := fifo(t, "ready")
	spec := sh("web", `echo "out $GREETING $(pwd)"; echo err >&2; echo > "$READY"; while :; do sleep 1000; done`,
		"GREETING=hello", "READY="+ready)
	spec.Dir = dir
	w := watch(t, s)
	st := start(t, s, spec)
	readLine(t, ready) // the shell has written its lines
	if st.State != Running || st.Pid == 0 || st.Adopted || st.Restarts != 0 {
		t.Fatalf("status after Start: %+v", st)
	}
	ps, err := readStat(st.Pid)
	if err != nil || ps.Pgrp != st.Pid {
		t.Fatalf("process %d is in group %d (%v), want its own", st.Pid, ps.Pgrp, err)
	}
	log := filepath.Join(d.logs, "web.log")
	for _, fd := range []string{"1", "2"} {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st.Pid, fd))
		if err != nil || target != log {
			t.Errorf("fd %s of the process is %q (%v), want the log file %s", fd, target, err, log)
		}
		info := readFile(t, fmt.Sprintf("/proc/%d/fdinfo/%s", st.Pid, fd))
		var flags int64
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, _ = strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			}
		}
		if flags&unix.O_APPEND == 0 {
			t.Errorf("fd %s is not opened for appending (flags %o)", fd, flags)
		}
	}
	env := strings.Split(strings.TrimRight(readFile(t, fmt.Sprintf("/proc/%d/environ", st.Pid)), "\x00"), "\x00")
	if strings.Join(env, " ") != testPath+" GREETING=hello READY="+ready {
		t.Errorf("environment %q, want only what the spec gives", env)
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", st.Pid)); cwd != dir {
		t.Errorf("working directory %q, want %q", cwd, dir)
	}
	if got := readFile(t, log); got != "out hello "+dir+"\nerr\n" {
		t.Errorf("log holds %q", got)
	}
	tailed, err := s.Tail("web", 1)
	if err != nil || string(tailed) != "err\n" {
		t.Errorf("Tail 1 = %q, %v", tailed, err)
	}
	if err := s.Stop(ctxT(t), "web"); err != nil {
		t.Fatal(err)
	}
	stopped := w.next("web", func(st Status) bool { return st.State == Stopped })
	if stopped.LastExit.Signal != syscall.SIGTERM || !stopped.LastExit.Known {
		t.Errorf("stopped with %v, want SIGTERM", stopped.LastExit)
	}
}

// A process killed with SIGKILL is started again at once: the fake clock never moves and no
// timer but the rotation's waits.
func TestKilledProcessRestartsAtOnce(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, newDirs(t), clk)
	w := watch(t, s)
	first := start(t, s, sleeper("web"))
	before := clk.Now()
	if err := unix.Kill(first.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := w.next("web", func(st Status) bool { return st.State == Running && st.Pid != first.Pid })
	if st.Restarts != 1 || st.LastExit.Signal != syscall.SIGKILL || !st.LastExit.Known {
		t.Errorf("after the kill: %+v", st)
	}
	if !clk.Now().Equal(before) || clk.Pending() != 1 {
		t.Errorf("the restart waited on the clock: now moved by %v, %d timers pending", clk.Now().Sub(before), clk.Pending())
	}
	if !alive(st.Pid) {
		t.Errorf("new process %d is not running", st.Pid)
	}
}

// noTimerWithin reports whether no timer of clk falls due within d.
func noTimerWithin(clk *clock.Fake, d time.Duration) bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return clk.WaitDue(ctx, d) != nil
}

// A process that always exits is started again at once, then after waits that double, then
// is in crashloop, tried every MaxBackoff.
func TestAlwaysExitingBacksOffThenCrashloops(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, newDirs(t), clk)
	w := watch(t, s)
	spec := sh("bad", "echo broken; exit 3")
	if err := s.Start(ctxT(t), spec); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		st := w.next("bad", func(st Status) bool { return st.State == Backoff })
		if st.Restarts != i+1 || st.LastExit.Code != 3 || st.Pid != 0 {
			t.Fatalf("backoff %d: %+v", i, st)
		}
		if got := st.Retry.Sub(clk.Now()); got != want {
			t.Fatalf("backoff %d: retry in %v, want %v", i, got, want)
		}
		if !noTimerWithin(clk, want-time.Millisecond) {
			t.Fatalf("backoff %d: a timer falls due before %v", i, want)
		}
		if err := clk.WaitDue(ctxT(t), want); err != nil {
			t.Fatal(err)
		}
		clk.Advance(want)
	}
	st := w.next("bad", func(st Status) bool { return st.State == Crashloop })
	if st.Restarts != 5 || st.Retry.Sub(clk.Now()) != DefaultMaxBackoff || st.Pid != 0 {
		t.Fatalf("crashloop: %+v", st)
	}
	// In crashloop it is tried again every MaxBackoff, and stays in crashloop.
	if !noTimerWithin(clk, DefaultMaxBackoff-time.Millisecond) {
		t.Fatal("a timer falls due before the crashloop's wait")
	}
	if err := clk.WaitDue(ctxT(t), DefaultMaxBackoff); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultMaxBackoff)
	st = w.next("bad", func(st Status) bool { return st.Restarts == 6 && st.Pid == 0 })
	if st.State != Crashloop || st.Retry.Sub(clk.Now()) != DefaultMaxBackoff {
		t.Fatalf("second crashloop try: %+v", st)
	}
	tailed, err := s.Tail("bad", 2)
	if err != nil || string(tailed) != "broken\nbroken\n" {
		t.Errorf("Tail = %q, %v", tailed, err)
	}
	// An operator's restart takes it out of crashloop at once.
	if err := s.Restart(ctxT(t), "bad"); err != nil {
		t.Fatal(err)
	}
	st = w.next("bad", func(st Status) bool { return st.State == Backoff })
	if st.Retry.Sub(clk.Now()) != time.Second {
		t.Errorf("after an operator's restart: %+v, want the first backoff again", st)
	}
	if err := s.Stop(ctxT(t), "bad"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status("bad"); st.State != Stopped {
		t.Errorf("stop during backoff: %+v", st)
	}
}

// A process in crashloop whose try runs for a whole window is running again.
func TestCrashloopEndsAfterAWindowUp(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, newDirs(t), clk)
	w := watch(t, s)
	count := filepath.Join(t.TempDir(), "count")
	// Dies three times, then stays up.
	spec := sh("flaky", `n=$(cat "$COUNT" 2>/dev/null || echo 0); echo $((n+1)) > "$COUNT"; [ $n -ge 3 ] && exec sleep 100000; exit 1`, "COUNT="+count)
	spec.Restart = Restart{Burst: 2}
	if err := s.Start(ctxT(t), spec); err != nil {
		t.Fatal(err)
	}
	st := w.next("flaky", func(st Status) bool { return st.State == Backoff })
	if err := clk.WaitDue(ctxT(t), time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(st.Retry.Sub(clk.Now()))
	st = w.next("flaky", func(st Status) bool { return st.State == Crashloop })
	if err := clk.WaitDue(ctxT(t), DefaultMaxBackoff); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultMaxBackoff)
	st = w.next("flaky", func(st Status) bool { return st.Pid != 0 })
	if st.State != Crashloop || st.Restarts != 3 {
		t.Fatalf("the try that stays up: %+v, want still in crashloop", st)
	}
	if err := clk.WaitDue(ctxT(t), DefaultWindow); err != nil {
		t.Fatal(err)
	}
	if !noTimerWithin(clk, DefaultWindow-time.Millisecond) {
		t.Fatal("crashloop ends before a whole window")
	}
	clk.Advance(DefaultWindow)
	got := w.next("flaky", func(got Status) bool { return got.State == Running })
	if got.Pid != st.Pid {
		t.Fatalf("running after a window up: %+v", got)
	}
}

// fifo makes a named pipe in a temporary directory.
func fifo(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readLine reads what a writer writes to the named pipe at path, until it closes its end (a
// shell has then restored what it redirected), and returns the first line.
func readLine(t *testing.T, path string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(path)
		line, _, _ := strings.Cut(string(b), "\n")
		got <- line
	}()
	select {
	case line := <-got:
		return line
	case <-ctxT(t).Done():
		t.Fatalf("nothing came through %s", path)
		return ""
	}
}

// Stop sends SIGTERM to the whole group, and SIGKILL once the grace has passed on the clock
// for a process that ignores SIGTERM; the children of its group are killed too.
func TestStopKillsGroupAfterGrace(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, newDirs(t), clk)
	w := watch(t, s)
	pids := fifo(t, "pids")
	spec := sh("stubborn", `trap "" TERM; sleep 100000 & echo $! > "$PIDS"; wait`, "PIDS="+pids)
	spec.StopGrace = 30 * time.Second
	leader := start(t, s, spec).Pid
	child, err := strconv.Atoi(readLine(t, pids))
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := readStat(child); err != nil || ps.Pgrp != leader {
		t.Fatalf("child %d in group %d (%v), want %d", child, ps.Pgrp, err, leader)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background(), "stubborn") }()
	w.next("stubborn", func(st Status) bool { return st.State == Stopping })
	if err := clk.WaitDue(ctxT(t), spec.StopGrace); err != nil {
		t.Fatal(err)
	}
	if !noTimerWithin(clk, spec.StopGrace-time.Millisecond) {
		t.Fatal("the grace timer is shorter than the grace")
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) before the grace had passed", err)
	default:
	}
	if !alive(leader) || !alive(child) {
		t.Fatal("SIGTERM ended a process that ignores it")
	}
	clk.Advance(spec.StopGrace)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status("stubborn")
	if st.State != Stopped || st.Pid != 0 || st.LastExit.Signal != syscall.SIGKILL {
		t.Errorf("after Stop: %+v", st)
	}
	if alive(leader) {
		t.Errorf("leader %d still runs after Stop returned", leader)
	}
	waitGone(t, child)
}

// A Stopped process is started again by Start, keeping its restart count.
func TestStartAfterStop(t *testing.T) {
	s := open(t, newDirs(t), clock.NewFake(time.Unix(1e9, 0)))
	first := start(t, s, sleeper("web"))
	if err := s.Start(ctxT(t), sleeper("web")); err == nil || !strings.Contains(err.Error(), "already supervised") {
		t.Fatalf("second Start: %v", err)
	}
	if err := s.Stop(ctxT(t), "web"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctxT(t), "web"); err != nil {
		t.Fatalf("Stop of a stopped process: %v", err)
	}
	if err := s.Restart(ctxT(t), "web"); err == nil {
		t.Fatal("Restart of a stopped process worked")
	}
	second := start(t, s, sleeper("web"))
	if second.State != Running || second.Pid == first.Pid {
		t.Fatalf("Start after Stop: %+v", second)
	}
	if err := s.Stop(ctxT(t), "nothing"); err == nil {
		t.Fatal("Stop of an unknown process worked")
	}
}

// An operator's Restart stops the running process and starts a new one, not counted.
func TestRestartRunningProcess(t *testing.T) {
	s := open(t, newDirs(t), clock.NewFake(time.Unix(1e9, 0)))
	first := start(t, s, sleeper("web"))
	if err := s.Restart(ctxT(t), "web"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status("web")
	if st.State != Running || st.Pid == first.Pid || st.Restarts != 0 || st.LastExit.Signal != syscall.SIGTERM {
		t.Fatalf("after Restart: %+v", st)
	}
	waitGone(t, first.Pid)
}

// A command that cannot be found is refused by Start; one that cannot run (here, a directory
// that is no program) is retried with backoff and its error shown.
func TestStartFailureBacksOff(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, newDirs(t), clk)
	if err := s.Start(ctxT(t), Spec{Name: "x", Command: []string{"no-such-program-here"}}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Start of a missing program: %v", err)
	}
	w := watch(t, s)
	spec := sleeper("web")
	spec.Dir = filepath.Join(t.TempDir(), "missing") // chdir fails in the child
	if err := s.Start(ctxT(t), spec); err != nil {
		t.Fatal(err)
	}
	st := w.next("web", func(st Status) bool { return st.State == Backoff })
	if st.Error == "" || st.Pid != 0 {
		t.Fatalf("failed start: %+v", st)
	}
	if err := os.Mkdir(spec.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wait := st.Retry.Sub(clk.Now())
	if err := clk.WaitDue(ctxT(t), wait); err != nil {
		t.Fatal(err)
	}
	clk.Advance(wait)
	st = w.next("web", func(st Status) bool { return st.State == Running })
	if st.Error != "" || !alive(st.Pid) {
		t.Fatalf("start once the directory exists: %+v", st)
	}
}

// A second supervisor on the same state directory is refused while the first runs.
func TestOneSupervisorPerDirectory(t *testing.T) {
	d := newDirs(t)
	open(t, d, clock.Real{})
	_, err := Open(Config{StateDir: d.state, LogDir: d.logs})
	if err == nil || !strings.Contains(err.Error(), "another supervisor") {
		t.Fatalf("second Open: %v", err)
	}
}

// The process can run as another user when the supervisor is root.
func TestUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	out, err := exec.Command("id", "-u", "nobody").Output()
	if err != nil {
		t.Skip("no user nobody here")
	}
	d := newDirs(t)
	if err := os.Chmod(filepath.Dir(d.state), 0o755); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, d, clk)
	w := watch(t, s)
	spec := sh("who", "id -u; id -g; exit 0")
	spec.User = "nobody"
	if err := s.Start(ctxT(t), spec); err != nil {
		t.Fatal(err)
	}
	w.next("who", func(st Status) bool { return st.State == Backoff })
	lines := strings.Split(readFile(t, filepath.Join(d.logs, "who.log")), "\n")
	if lines[0] != strings.TrimSpace(string(out)) {
		t.Errorf("ran as uid %q, want nobody's %q", lines[0], strings.TrimSpace(string(out)))
	}
}
