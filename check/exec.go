//go:build unix

package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// maxStderr caps what is kept of a plugin's standard error: it is read only for a plugin that
// wrote nothing to standard output, to say why.
const maxStderr = 4 << 10

// ioGrace is how long the output pipes may stay open once the plugin's process group is gone:
// only a descendant that left the group (setsid) can hold them that long.
const ioGrace = time.Second

// killGrace is how long a plugin killed for overrunning may take to die before the check
// answers without it.
const killGrace = 5 * time.Second

// runExec runs a plugin as Nagios does, with one difference: the plugin gets only the
// environment given, not the agent's.
//
// Its states follow Nagios Core (base/checks.c and the default service_check_timeout_state=c):
// exit codes 0-3 are OK, WARNING, CRITICAL and UNKNOWN; any other exit code ("out of bounds",
// 126 and 127 included: the shell's "not executable" and "not found"), a plugin killed by a
// signal ("did not exit properly"), a plugin that cannot be started, and a timeout are CRITICAL.
// A check cancelled by its caller is UNKNOWN: nothing was learned about the service.
func (r *Runner) runExec(ctx context.Context, s Spec, timeout time.Duration) Result {
	name, err := program(s.Exec[0], s.Env)
	if err != nil {
		return Result{State: Critical, Output: "cannot run plugin: " + err.Error()}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return Result{State: Unknown, Output: "cannot run plugin: " + err.Error()}
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return Result{State: Unknown, Output: "cannot run plugin: " + err.Error()}
	}
	defer errR.Close()
	env := s.Env
	if env == nil {
		env = []string{} // an empty environment, not the agent's
	}
	cmd := &exec.Cmd{Path: name, Args: s.Exec, Dir: s.Dir, Env: env, Stdout: outW, Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return Result{State: Critical, Output: "cannot run plugin: " + oneLine(err.Error())}
	}
	max := r.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	outc, errc := drain(outR, max), drain(errR, maxStderr)

	// exited says the plugin is gone: true if it is left a zombie (its pid, and so its process
	// group id, still taken), false if it was reaped already.
	pid := cmd.Process.Pid
	exited := make(chan bool, 1)
	go func() {
		if canPin && waitPinned(pid) == nil {
			exited <- true
			return
		}
		cmd.Wait()
		exited <- false
	}()
	var pinned, stopped bool
	select {
	case pinned = <-exited:
	case <-ctx.Done():
		// Nagios kills a plugin that overruns with SIGKILL to its whole process group.
		stopped = true
		syscall.Kill(-pid, syscall.SIGKILL)
		dying, cancel := context.WithTimeout(context.Background(), killGrace)
		defer cancel()
		select {
		case pinned = <-exited:
		case <-dying.Done():
			// Stuck in the kernel (a hung NFS mount, say): answer now, reap when it dies.
			go func() {
				if <-exited {
					syscall.Kill(-pid, syscall.SIGKILL)
					cmd.Wait()
				}
			}()
			return Result{State: Critical, Output: fmt.Sprintf("plugin timed out after %v and has not died yet (pid %d)", timeout, pid)}
		}
	}
	if pinned {
		// The plugin's group id cannot have been reused: whatever it left running in the group
		// goes too, and with it any hold on the output pipes.
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	grace, cancel := context.WithTimeout(context.Background(), ioGrace)
	defer cancel()
	out, errOut := collect(grace, outR, outc), collect(grace, errR, errc)
	var waitErr error
	if pinned {
		waitErr = cmd.Wait()
	}

	if stopped {
		if errors.Is(ctx.Err(), context.Canceled) {
			return Result{State: Unknown, Output: "check cancelled"}
		}
		return Result{State: Critical, Output: fmt.Sprintf("plugin timed out after %v", timeout)}
	}
	if cmd.ProcessState == nil {
		return Result{State: Critical, Output: fmt.Sprintf("plugin did not exit properly: %v", waitErr)}
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return Result{State: Critical, Output: "plugin did not exit properly: " + cmd.ProcessState.String()}
	}
	if ws.Signaled() {
		return Result{State: Critical, Output: fmt.Sprintf("plugin did not exit properly: killed by signal %v", ws.Signal())}
	}
	o := ParseOutput(string(out))
	if o.Text == "" && len(o.Perf) == 0 && o.Long == "" {
		o.Text = oneLine(string(errOut))
	}
	if o.Text == "" {
		o.Text = "(No output returned from plugin)"
	}
	switch code := ws.ExitStatus(); code {
	case 0, 1, 2, 3:
		return Result{State: State(code), Output: o.Text, Long: o.Long, Perf: o.Perf}
	default:
		hint := ""
		switch code {
		case 126:
			hint = " - plugin may not be executable"
		case 127:
			hint = " - plugin may be missing"
		}
		return Result{State: Critical, Output: fmt.Sprintf("(Return code of %d is out of bounds%s) %s", code, hint, o.Text), Long: o.Long}
	}
}

// program finds the plugin: a name with a slash as it is (a relative one from the working
// directory), a bare name in the PATH of the plugin's own environment.
func program(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in the check's PATH", name)
}

// drain reads f to its end, keeping the first max bytes and dropping the rest, so the writer
// never blocks on a full pipe; the kept bytes arrive on the channel.
func drain(f *os.File, max int) <-chan []byte {
	c := make(chan []byte, 1)
	go func() {
		kept := make([]byte, 0, min(max, 4096))
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if room := max - len(kept); room > 0 {
				kept = append(kept, buf[:min(n, room)]...)
			}
			if err != nil {
				c <- kept
				return
			}
		}
	}()
	return c
}

// collect waits for drain's bytes; when grace ends first, it cuts the read short.
func collect(grace context.Context, f *os.File, c <-chan []byte) []byte {
	select {
	case b := <-c:
		return b
	case <-grace.Done():
		if f.SetReadDeadline(time.Unix(1, 0)) != nil {
			f.Close()
		}
		return <-c
	}
}
