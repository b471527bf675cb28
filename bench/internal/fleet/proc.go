package fleet

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procStat returns the fields of /proc/PID/stat after the command name: f[1] is the parent's pid,
// f[11] and f[12] the process's user and system time, f[13] and f[14] those of its children that
// it has waited for, all in clock ticks.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
}

func ticks(f []string, i, j int) int64 {
	if len(f) <= j {
		return 0
	}
	a, _ := strconv.ParseInt(f[i], 10, 64)
	b, _ := strconv.ParseInt(f[j], 10, 64)
	return a + b
}

// CPUTicks is the process's user+system time in clock ticks.
func CPUTicks(pid int) int64 { return ticks(procStat(pid), 11, 12) }

// CPUTicksSum is the user+system time of the processes, in clock ticks.
func CPUTicksSum(pids []int) int64 {
	var t int64
	for _, pid := range pids {
		t += CPUTicks(pid)
	}
	return t
}

// TreeTicks is the CPU time of a PostgreSQL server, in clock ticks: the postmaster's own, that
// of the backends it has waited for, and that of its live children. A backend that ends during
// a window moves its time from the last term to the second, so differences stay right.
func TreeTicks(pid int) int64 {
	if pid == 0 {
		return 0
	}
	f := procStat(pid)
	t := ticks(f, 11, 12) + ticks(f, 13, 14)
	parent := strconv.Itoa(pid)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		child, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		if cf := procStat(child); len(cf) > 12 && cf[1] == parent {
			t += ticks(cf, 11, 12)
		}
	}
	return t
}

// RSS is the process's resident memory in bytes (VmRSS).
func RSS(pid int) int64 {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// RSSSum is the resident memory of the processes, summed.
func RSSSum(pids []int) int64 {
	var t int64
	for _, pid := range pids {
		t += RSS(pid)
	}
	return t
}
