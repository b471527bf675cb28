package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/check"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/supervise"
	"golang.org/x/sys/unix"
)

// defaultCheckInterval is how often a check that gives no interval is tried again while a
// release is verified.
const defaultCheckInterval = 10 * time.Second

// firstCheckRetry is the first wait before a failing check is tried again while a release is
// verified; the waits double up to the check's interval. A service takes a moment to listen
// after it starts, and a check tried once too early must not cost a whole interval.
const firstCheckRetry = 250 * time.Millisecond

// verify waits until rel's processes have stayed up for the manifest's min_healthy_time and its
// checks have all passed (OK; a WARNING does not pass), both within healthy_deadline; a rollout's
// wave may set either in the assignment, overriding the manifest. A process that exits fails it
// at once.
func (a *Agent) verify(ctx context.Context, r *appRun, rel *releaseInfo, w *procWatch, as api.Assignment) error {
	u := rel.m.Update
	if as.Version == rel.m.Version {
		if as.MinHealthyTime > 0 {
			u.MinHealthyTime = release.Duration(as.MinHealthyTime)
		}
		if as.HealthyDeadline > 0 {
			u.HealthyDeadline = release.Duration(as.HealthyDeadline)
		}
	}
	specs, interval, err := a.checkSpecs(r, rel)
	if err != nil {
		return &stepError{step: stepVerify, err: err}
	}
	if len(rel.m.Processes) == 0 && len(specs) == 0 {
		return nil
	}
	deadline := a.clk.NewTimer(time.Duration(u.HealthyDeadline))
	defer deadline.Stop()
	upOK := len(rel.m.Processes) == 0 || u.MinHealthyTime == 0
	var up <-chan time.Time
	if !upOK {
		t := a.clk.NewTimer(time.Duration(u.MinHealthyTime))
		defer t.Stop()
		up = t.C()
	}
	checksOK := len(specs) == 0
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	results := make(chan error, 1)
	round := func() {
		wg.Add(1)
		go func() { defer wg.Done(); results <- a.runChecks(cctx, specs) }()
	}
	if !checksOK {
		round()
	}
	var retry clock.Timer
	var again <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	var lastCheck error
	wait := firstCheckRetry
	for !upOK || !checksOK {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-w.ch:
			if err := w.see(st); err != nil {
				return a.procError(r, stepVerify, st.Name, err)
			}
		case <-up:
			upOK = true
		case err := <-results:
			if err == nil {
				checksOK = true
				continue
			}
			lastCheck = err
			retry = a.clk.NewTimer(min(wait, interval))
			again = retry.C()
			wait *= 2
		case <-again:
			again = nil
			round()
		case <-deadline.C():
			err := fmt.Errorf("processes not up for min_healthy_time %v within healthy_deadline %v", time.Duration(u.MinHealthyTime), time.Duration(u.HealthyDeadline))
			if !checksOK {
				err = fmt.Errorf("checks did not pass within healthy_deadline %v", time.Duration(u.HealthyDeadline))
				if lastCheck != nil {
					err = fmt.Errorf("%w: %v", err, lastCheck)
				}
			}
			se := &stepError{step: stepVerify, err: err}
			if len(rel.m.Processes) > 0 {
				se = a.procError(r, stepVerify, rel.m.Processes[0].Name, err)
			}
			return se
		}
	}
	// The changes come in order: once the watch has seen each process's first run, what the
	// supervisor says now has the last word, so a death not yet through the watch (the wait
	// may have ended first) fails the verify too.
	for _, p := range rel.m.Processes {
		for w.pids[p.Name] == 0 {
			select {
			case st := <-w.ch:
				if err := w.see(st); err != nil {
					return a.procError(r, stepVerify, st.Name, err)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if st, ok := r.sup.Status(p.Name); ok {
			if err := w.see(st); err != nil {
				return a.procError(r, stepVerify, st.Name, err)
			}
		}
	}
	return nil
}

// checkSpecs turns the manifest's checks into the check runner's, with ${FERRY_PORT_X}
// expanded; the interval is the shortest of theirs.
func (a *Agent) checkSpecs(r *appRun, rel *releaseInfo) ([]namedCheck, time.Duration, error) {
	env, err := environ(a.Name(), r.name, rel.version, rel.ports, nil)
	if err != nil {
		return nil, 0, err
	}
	interval := time.Duration(0)
	var out []namedCheck
	for _, c := range rel.m.Checks {
		s := check.Spec{Dir: rel.dir, Env: env, Timeout: time.Duration(c.Timeout)}
		var err error
		if s.HTTP, err = release.Expand(c.HTTP, rel.vars); err == nil {
			if s.TCP, err = release.Expand(c.TCP, rel.vars); err == nil && len(c.Exec) > 0 {
				s.Exec, err = expandAll(c.Exec, rel.vars)
			}
		}
		if err != nil {
			return nil, 0, fmt.Errorf("check %s: %v", c.Name, err)
		}
		if len(s.Exec) > 0 && strings.Contains(s.Exec[0], "/") && !filepath.IsAbs(s.Exec[0]) {
			s.Exec[0] = filepath.Join(rel.dir, s.Exec[0])
		}
		out = append(out, namedCheck{name: c.Name, spec: s, interval: time.Duration(c.Interval)})
		if d := time.Duration(c.Interval); d > 0 && (interval == 0 || d < interval) {
			interval = d
		}
	}
	if interval == 0 {
		interval = defaultCheckInterval
	}
	return out, interval, nil
}

type namedCheck struct {
	name     string
	spec     check.Spec
	interval time.Duration // the manifest's; 0 when it gives none
}

// runChecks runs every check once; nil when all are OK.
func (a *Agent) runChecks(ctx context.Context, checks []namedCheck) error {
	for _, c := range checks {
		if res := a.checks.Run(ctx, c.spec); res.State != check.OK {
			return fmt.Errorf("check %s: %s", c.name, res.Output)
		}
	}
	return nil
}

// hookTimeout bounds a hook's run: a migration may take minutes, a hook that hangs must not
// keep the app from its next release forever.
const hookTimeout = 5 * time.Minute

// hooksLog is the hooks' log file in the app's log directory: a process name never starts with
// '_', so no process's log can be it.
const hooksLog = "_hooks.log"

// hook runs one of rel's hooks, if it has one, in its directory with its environment, output
// appended to the app's hooks log; killed (its whole process group) after hookTimeout on the
// agent's clock.
func (a *Agent) hook(ctx context.Context, r *appRun, rel *releaseInfo, which string, cmd []string) error {
	if len(cmd) == 0 {
		return nil
	}
	args, err := expandAll(cmd, rel.vars)
	if err != nil {
		return err
	}
	env, err := environ(a.Name(), r.name, rel.version, rel.ports, nil)
	if err != nil {
		return err
	}
	prog := args[0]
	switch {
	case filepath.IsAbs(prog):
	case strings.Contains(prog, "/"):
		prog = filepath.Join(rel.dir, prog)
	default:
		prog = lookPath(prog)
	}
	logs := filepath.Join(r.dir, "logs")
	if err := os.MkdirAll(logs, 0o750); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(logs, hooksLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Fprintf(out, "--- %s %s hook of %s: %s\n", a.clk.Now().UTC().Format(time.RFC3339), which, rel.version, strings.Join(args, " "))
	c := &exec.Cmd{Path: prog, Args: args, Dir: rel.dir, Env: env, Stdout: out, Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if err := c.Start(); err != nil {
		fmt.Fprintf(out, "--- cannot start: %v\n", err)
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	t := a.clk.NewTimer(hookTimeout)
	defer t.Stop()
	pid := c.Process.Pid
	select {
	case err = <-done:
	case <-t.C():
		unix.Kill(-pid, unix.SIGKILL)
		<-done
		err = fmt.Errorf("did not finish within %v; killed", hookTimeout)
	case <-ctx.Done():
		unix.Kill(-pid, unix.SIGKILL)
		<-done
		return ctx.Err()
	}
	unix.Kill(-pid, unix.SIGKILL) // what it left behind in its group
	if err != nil {
		fmt.Fprintf(out, "--- %s hook failed: %v\n", which, err)
		return fmt.Errorf("hook %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// lookPath finds a program named without a '/' in the PATH hooks get.
func lookPath(prog string) string {
	for _, d := range filepath.SplitList(supervise.DefaultPath) {
		p := filepath.Join(d, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return prog
}

// hookTail is the end of r's hooks log.
func (a *Agent) hookTail(r *appRun) string {
	f, err := os.Open(filepath.Join(r.dir, "logs", hooksLog))
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > api.MaxLogTail {
		f.Seek(fi.Size()-api.MaxLogTail, io.SeekStart)
	}
	b, err := io.ReadAll(io.LimitReader(f, api.MaxLogTail))
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return logTail(b)
}

// logTail makes the end of a log fit the report: at most api.MaxLogTail bytes, from a line's
// start where one is near, as text without control characters but newlines and tabs.
func logTail(b []byte) string {
	if len(b) > api.MaxLogTail {
		b = b[len(b)-api.MaxLogTail:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 && i < 512 {
			b = b[i+1:]
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return ' '
		}
		return r
	}, s)
	for len(s) > api.MaxLogTail { // the replacement character is longer than the byte it replaced
		s = s[:len(s)-1]
		s = strings.ToValidUTF8(s, "")
	}
	return s
}
