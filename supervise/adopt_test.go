package supervise

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
	"golang.org/x/sys/unix"
)

// echoer is a process that writes to its log each line the test says, and acknowledges it.
type echoer struct {
	t       *testing.T
	in, ack string
}

func newEchoer(t *testing.T) echoer {
	return echoer{t, fifo(t, "in"), fifo(t, "ack")}
}

func (e echoer) spec(name string) Spec {
	return sh(name, `exec 3<>"$IN"; while read l <&3; do echo "$l"; echo ok > "$ACK"; done`, "IN="+e.in, "ACK="+e.ack)
}

// say has the process write line to its log, and waits until it has.
func (e echoer) say(line string) {
	e.t.Helper()
	f, err := os.OpenFile(e.in, os.O_WRONLY, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = f.WriteString(line + "\n")
	f.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	if got := readLine(e.t, e.ack); got != "ok" {
		e.t.Fatalf("process acknowledged %q", got)
	}
}

// A second supervisor on the same state directory adopts the running process (same pid, not
// restarted), which kept writing its log while no supervisor ran; rotation goes on, and the
// adopted process's death is noticed and it is restarted at once.
func TestAdoptionAcrossSupervisors(t *testing.T) {
	d := newDirs(t)
	clk := clock.NewFake(time.Unix(1e9, 0))
	e := newEchoer(t)
	spec := e.spec("echo")
	spec.Logs = Logs{MaxSize: 4096, Keep: 1}

	s1 := open(t, d, clk)
	first := start(t, s1, spec)
	e.say("one")
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	e.say("two") // no supervisor: the process writes its file all the same
	log := filepath.Join(d.logs, "echo.log")
	if got := readFile(t, log); got != "one\ntwo\n" {
		t.Fatalf("log holds %q", got)
	}

	s2 := open(t, d, clk)
	if got := s2.Unclaimed(); !slices.Equal(got, []string{"echo"}) {
		t.Fatalf("Unclaimed = %q", got)
	}
	w := watch(t, s2)
	st := start(t, s2, spec)
	if st.Pid != first.Pid || !st.Adopted || st.State != Running || st.Restarts != 0 || !st.Started.Equal(first.Started) {
		t.Fatalf("adopted: %+v, first: %+v", st, first)
	}
	if got := s2.Unclaimed(); len(got) != 0 {
		t.Fatalf("Unclaimed after Start = %q", got)
	}
	rec, err := readState(d.state)
	if err != nil || rec.Processes["echo"].Pid != first.Pid {
		t.Fatalf("state file: %+v, %v", rec, err)
	}

	// Rotation of the adopted process's log: the file is truncated under it, and its next line
	// lands at the new start because it appends.
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(strings.Repeat("filler line\n", 400))
	f.Close()
	if err := s2.Rotate(); err != nil {
		t.Fatal(err)
	}
	e.say("three")
	if got := readFile(t, log); got != "three\n" {
		t.Errorf("log after rotation holds %q", got)
	}
	if old := readFile(t, log+".1"); len(old) > 4096 || !strings.HasSuffix(old, "filler line\n") || !strings.HasPrefix(old, "filler") {
		t.Errorf("older generation holds %d bytes: %.40q…", len(old), old)
	}
	tailed, err := s2.Tail("echo", 2)
	if err != nil || string(tailed) != "filler line\nthree\n" {
		t.Errorf("Tail across generations = %q, %v", tailed, err)
	}

	// The adopted process is not the supervisor's child; its end is seen all the same.
	before := clk.Now()
	if err := unix.Kill(first.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = w.next("echo", func(st Status) bool { return st.State == Running && st.Pid != first.Pid })
	if st.Adopted || st.Restarts != 1 || st.LastExit.Known || st.LastExit.Time.IsZero() || !clk.Now().Equal(before) {
		t.Errorf("after the adopted process died: %+v", st)
	}
	e.say("four")
	if got := readFile(t, log); got != "three\nfour\n" {
		t.Errorf("log of the new process holds %q", got)
	}
}

// A process that died while no supervisor ran is started again, and counted as a restart.
func TestProcessDeadWhileAwayStartedAgain(t *testing.T) {
	d := newDirs(t)
	clk := clock.NewFake(time.Unix(1e9, 0))
	s1 := open(t, d, clk)
	first := start(t, s1, sleeper("web"))
	s1.Close()
	unix.Kill(first.Pid, unix.SIGKILL)
	waitGone(t, first.Pid)

	s2 := open(t, d, clk)
	if got := s2.Unclaimed(); len(got) != 0 {
		t.Fatalf("Unclaimed = %q", got)
	}
	st := start(t, s2, sleeper("web"))
	if st.Pid == first.Pid || st.Adopted || st.Restarts != 1 || !alive(st.Pid) {
		t.Fatalf("after the process died unsupervised: %+v", st)
	}
}

// A state file whose pid now belongs to another process (another start time), or that was
// written in another boot, adopts nothing, and the process with that pid is left alone.
func TestStaleStateNotAdopted(t *testing.T) {
	other := exec.Command("sleep", "100000")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	ps, err := readStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	spec := sleeper("web").withDefaults()
	for name, st := range map[string]state{
		"reused pid": {Version: stateVersion, Boot: boot, Processes: map[string]record{
			"web": {Pid: other.Process.Pid, StartTicks: ps.Start + 1, Spec: spec.fingerprint()},
		}},
		"other boot": {Version: stateVersion, Boot: "a-boot-before", Processes: map[string]record{
			"web": {Pid: other.Process.Pid, StartTicks: ps.Start, Spec: spec.fingerprint()},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDirs(t)
			if err := os.MkdirAll(d.state, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := writeState(d.state, st); err != nil {
				t.Fatal(err)
			}
			s := open(t, d, clock.NewFake(time.Unix(1e9, 0)))
			if got := s.Unclaimed(); len(got) != 0 {
				t.Fatalf("Unclaimed = %q", got)
			}
			got := start(t, s, sleeper("web"))
			if got.Pid == other.Process.Pid || got.Adopted {
				t.Fatalf("adopted a process it did not start: %+v", got)
			}
			if !alive(other.Process.Pid) {
				t.Fatal("the process that reused the pid was signalled")
			}
		})
	}
}

// A process left running from another Spec (a new release's command) is stopped before the
// new one starts.
func TestChangedSpecReplacesLeftProcess(t *testing.T) {
	d := newDirs(t)
	clk := clock.NewFake(time.Unix(1e9, 0))
	s1 := open(t, d, clk)
	first := start(t, s1, sleeper("web"))
	s1.Close()

	s2 := open(t, d, clk)
	st := start(t, s2, sh("web", "exec sleep 99999"))
	if st.Pid == first.Pid || st.Adopted || st.State != Running {
		t.Fatalf("started from a new spec: %+v", st)
	}
	waitGone(t, first.Pid)
}

// A process left running that no Start claims can be stopped.
func TestStopUnclaimed(t *testing.T) {
	d := newDirs(t)
	clk := clock.NewFake(time.Unix(1e9, 0))
	s1 := open(t, d, clk)
	first := start(t, s1, sleeper("old"))
	s1.Close()

	s2 := open(t, d, clk)
	if got := s2.Unclaimed(); !slices.Equal(got, []string{"old"}) {
		t.Fatalf("Unclaimed = %q", got)
	}
	if err := s2.Restart(ctxT(t), "old"); err == nil {
		t.Fatal("Restart of an unclaimed process worked")
	}
	if err := s2.Stop(ctxT(t), "old"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first.Pid)
	if got := s2.Unclaimed(); len(got) != 0 {
		t.Fatalf("Unclaimed after Stop = %q", got)
	}
	if st, err := readState(d.state); err != nil || len(st.Processes) != 0 {
		t.Fatalf("state after Stop: %+v, %v", st, err)
	}
}

// A damaged state file stops Open with a message that says what to do.
func TestDamagedStateFileRefused(t *testing.T) {
	d := newDirs(t)
	if err := os.MkdirAll(d.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.state, stateName), []byte(`{"version":1,"processes":{"../x":{}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Config{StateDir: d.state, LogDir: d.logs})
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("Open = %v", err)
	}
	// The lock is released: with the file moved away, Open works.
	os.Remove(filepath.Join(d.state, stateName))
	open(t, d, clock.NewFake(time.Unix(1e9, 0)))
}

// The state file is written atomically and readable by its owner only.
func TestStateFileMode(t *testing.T) {
	d := newDirs(t)
	s := open(t, d, clock.NewFake(time.Unix(1e9, 0)))
	start(t, s, sleeper("web"))
	fi, err := os.Stat(filepath.Join(d.state, stateName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, %v", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(d.state, ".state-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %q", left)
	}
}
