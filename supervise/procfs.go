package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStat is what the supervisor reads of /proc/PID/stat: enough to tell a process from a
// later one that reuses its pid, and whether it is still alive.
type procStat struct {
	State byte   // field 3: R, S, D, Z (zombie), X (dead), ...
	Pgrp  int    // field 5: the process group
	Start uint64 // field 22: start time in clock ticks since boot
}

// dead reports whether the process has exited (a zombie waits only to be reaped).
func (s procStat) dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// maxStatLen bounds what is read of a stat line; the kernel writes well under 1 KiB.
const maxStatLen = 4096

// parseStat parses a /proc/PID/stat line. The second field, the command name in parentheses,
// may itself hold spaces and parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	if len(b) > maxStatLen {
		return procStat{}, fmt.Errorf("stat line of %d bytes; at most %d", len(b), maxStatLen)
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("stat line has no (command) field")
	}
	if _, err := strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return procStat{}, fmt.Errorf("stat line does not start with a pid: %q", b[:open])
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3, so field n is f[n-3].
	if len(f) < 22-3+1 {
		return procStat{}, fmt.Errorf("stat line has %d fields after the command; want at least 20", len(f))
	}
	if len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("stat state %q is not one letter", f[0])
	}
	pgrp, err := strconv.Atoi(f[5-3])
	if err != nil {
		return procStat{}, fmt.Errorf("stat pgrp %q: %v", f[5-3], err)
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat starttime %q: %v", f[22-3], err)
	}
	return procStat{State: f[0][0], Pgrp: pgrp, Start: start}, nil
}

// errNoProcess says that no process has the pid.
var errNoProcess = errors.New("no such process")

// readStat reads /proc/PID/stat; errNoProcess when there is no such process.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procStat{}, errNoProcess
	}
	if err != nil {
		return procStat{}, err
	}
	s, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return s, nil
}

// bootID names the running boot of the kernel: process start times count from boot, so a
// state file written in another boot holds nothing that can be adopted.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
