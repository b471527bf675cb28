//go:build linux

package check

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var path = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

// plugin writes an sh script as DIR/bin/NAME and returns DIR.
func plugin(t *testing.T, name, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExecStates(t *testing.T) {
	cases := []struct {
		name, body string
		state      State
		output     string
		perf       int
	}{
		{"ok", `echo "DISK OK - free space: / 3326 MB (56%);| /=2643MB;5948;5958;0;5968"`, OK, "DISK OK - free space: / 3326 MB (56%);", 1},
		{"warning", `echo "LOAD WARNING | load1=12;10;20;0 load5=8;10;20;0"; exit 1`, Warning, "LOAD WARNING", 2},
		{"critical", `echo "CRITICAL - socket timeout"; exit 2`, Critical, "CRITICAL - socket timeout", 0},
		{"unknown", `echo "UNKNOWN - bad arguments"; exit 3`, Unknown, "UNKNOWN - bad arguments", 0},
		{"no output", `exit 0`, OK, "(No output returned from plugin)", 0},
		{"stderr only", `echo "cannot open /proc/loadavg" >&2; exit 3`, Unknown, "cannot open /proc/loadavg", 0},
		{"out of bounds", `echo "OK really"; exit 5`, Critical, "(Return code of 5 is out of bounds) OK really", 0},
		{"missing", `no-such-command-anywhere`, Critical, "(Return code of 127 is out of bounds - plugin may be missing)", 0},
		{"signal", `echo "OK so far"; kill -SEGV $$`, Critical, "plugin did not exit properly: killed by signal segmentation fault", 0},
	}
	r := newRunner()
	for _, c := range cases {
		dir := plugin(t, "check", c.body)
		res := r.Run(context.Background(), Spec{Exec: []string{"bin/check"}, Dir: dir, Env: path})
		if res.State != c.state || !strings.HasPrefix(res.Output, c.output) || len(res.Perf) != c.perf || !res.Time.Equal(t0) {
			t.Errorf("%s: %v %q %v at %v, want %v %q with %d perf items", c.name, res.State, res.Output, res.Perf, res.Time, c.state, c.output, c.perf)
		}
	}
}

func TestExecLongOutput(t *testing.T) {
	dir := plugin(t, "check", `cat <<'EOF'
DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
/ 15272 MB (77%);
/var/log 819 MB (84%); | /boot=68MB;88;93;0;98
/var/log=818MB;970;975;0;980
EOF`)
	res := newRunner().Run(context.Background(), Spec{Exec: []string{"bin/check"}, Dir: dir, Env: path})
	if res.State != OK || res.Long != "/ 15272 MB (77%);\n/var/log 819 MB (84%);" || len(res.Perf) != 3 || res.Perf[2].Label != "/var/log" {
		t.Fatalf("%+v", res)
	}
}

func TestExecEnvDirAndPath(t *testing.T) {
	dir := plugin(t, "check", `echo "OK foo=$FOO home=${HOME-unset} dir=$(pwd)"`)
	env := append([]string{"FOO=bar baz"}, path...)
	res := newRunner().Run(context.Background(), Spec{Exec: []string{"bin/check"}, Dir: dir, Env: env})
	if want := "OK foo=bar baz home=unset dir=" + dir; res.State != OK || res.Output != want {
		t.Fatalf("got %v %q, want OK %q", res.State, res.Output, want)
	}
	// A bare name is looked up in the plugin's PATH, not the agent's.
	res = newRunner().Run(context.Background(), Spec{Exec: []string{"sh", "-c", "echo OK from sh"}, Env: path})
	if res.State != OK || res.Output != "OK from sh" {
		t.Fatalf("bare name: %v %q", res.State, res.Output)
	}
	res = newRunner().Run(context.Background(), Spec{Exec: []string{"sh", "-c", "echo OK"}})
	if res.State != Critical || !strings.Contains(res.Output, "sh not found in the check's PATH") {
		t.Fatalf("no PATH: %v %q", res.State, res.Output)
	}
	res = newRunner().Run(context.Background(), Spec{Exec: []string{"bin/none"}, Dir: dir, Env: path})
	if res.State != Critical || !strings.Contains(res.Output, "cannot run plugin") {
		t.Fatalf("missing program: %v %q", res.State, res.Output)
	}
}

func TestExecTimeout(t *testing.T) {
	dir := plugin(t, "check", `echo "OK starting"; exec sleep 1000`)
	res := newRunner().Run(context.Background(), Spec{Exec: []string{"bin/check"}, Dir: dir, Env: path, Timeout: 200 * time.Millisecond})
	if res.State != Critical || res.Output != "plugin timed out after 200ms" {
		t.Fatalf("%v %q", res.State, res.Output)
	}
}

// childPlugin runs a plugin (body) that starts a child of its own and writes the child's pid
// into the FIFO "fifo" (a second FIFO, "ready", is there for the plugin's own use). It returns
// the check's result and a pidfd of the child, opened while the child surely lives; then is
// called once the pidfd is open.
func childPlugin(t *testing.T, ctx context.Context, body string, then func()) (Result, int) {
	t.Helper()
	dir := plugin(t, "check", body)
	fifo := filepath.Join(dir, "fifo")
	for _, name := range []string{fifo, filepath.Join(dir, "ready")} {
		if err := unix.Mkfifo(name, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pidfd := make(chan int, 1)
	go func() {
		b, err := os.ReadFile(fifo)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		fd := -1
		if err == nil && perr == nil {
			fd, err = unix.PidfdOpen(pid, 0)
		}
		if err != nil || perr != nil {
			t.Errorf("the child's pid %q: %v %v", b, err, perr)
			fd = -1
		}
		if then != nil {
			then()
		}
		pidfd <- fd
	}()
	res := newRunner().Run(ctx, Spec{Exec: []string{"bin/check"}, Dir: dir, Env: path, Timeout: time.Minute})
	return res, <-pidfd
}

// waitGone waits, for at most 10 s, until the process behind pidfd has exited.
func waitGone(t *testing.T, pidfd int) {
	t.Helper()
	if pidfd < 0 {
		return
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n != 1 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			t.Fatalf("the plugin's child still runs (poll: %d, %v)", n, err)
		}
		return
	}
}

func TestExecCancelKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	res, fd := childPlugin(t, ctx, "sleep 1000 & echo $! > fifo\nwait", cancel)
	if res.State != Unknown || res.Output != "check cancelled" {
		t.Errorf("%v %q", res.State, res.Output)
	}
	waitGone(t, fd)
}

func TestExecLeftoverChildrenKilled(t *testing.T) {
	// The child holds the plugin's stdout open: the check must not wait for it.
	res, fd := childPlugin(t, context.Background(), "sleep 1000 & echo $! > fifo\necho 'OK done'", nil)
	if res.State != OK || res.Output != "OK done" {
		t.Errorf("%v %q", res.State, res.Output)
	}
	waitGone(t, fd)
}

func TestExecEscapedChildHoldsPipe(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid (util-linux) not installed")
	}
	// A child that left the process group is not killed with it; its hold on stdout is cut
	// after a grace period. The plugin exits only once the child has its own session.
	res, fd := childPlugin(t, context.Background(), `setsid sh -c 'echo $$ > fifo; echo > ready; exec sleep 1000' &
read x < ready
echo "OK escaped"`, nil)
	if fd >= 0 {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		unix.Close(fd)
	}
	if res.State != OK || res.Output != "OK escaped" {
		t.Errorf("%v %q", res.State, res.Output)
	}
}

func TestExecHugeOutput(t *testing.T) {
	dir := plugin(t, "check", `echo "WARNING big | a=1"; head -c 20000000 /dev/zero | tr '\0' 'x'; exit 1`)
	r := newRunner()
	res := r.Run(context.Background(), Spec{Exec: []string{"bin/check"}, Dir: dir, Env: path})
	if res.State != Warning || res.Output != "WARNING big" || len(res.Perf) != 1 || len(res.Long) > DefaultMaxOutput || len(res.Long) < DefaultMaxOutput/2 {
		t.Fatalf("%v %q perf %v long %d bytes", res.State, res.Output, res.Perf, len(res.Long))
	}
	// Endless output, bounded by the timeout; memory by the cap.
	dir = plugin(t, "check", `exec yes`)
	r.MaxOutput = 1 << 10
	res = r.Run(context.Background(), Spec{Exec: []string{"bin/check"}, Dir: dir, Env: path, Timeout: 300 * time.Millisecond})
	if res.State != Critical || res.Output != "plugin timed out after 300ms" {
		t.Fatalf("%v %q", res.State, res.Output)
	}
}
