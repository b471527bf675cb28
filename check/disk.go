package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Default disk thresholds on free space, as api.CheckSpec documents them.
const (
	DefaultDiskWarn = "10%"
	DefaultDiskCrit = "5%"
)

// Threshold is a disk check's threshold on free space: a percentage of the file system, or a
// size in bytes.
type Threshold struct {
	// Percent is set for a percentage; Value is then 0–100, else a number of bytes.
	Percent bool
	Value   float64
}

// maxThresholdLen bounds a threshold's text: a number and a unit fit in far less.
const maxThresholdLen = 32

// sizeUnits are the units a size threshold may carry, matched without regard to case: SI
// (powers of 1000) and IEC (powers of 1024) as they are written; K, M, G, T and P alone are
// binary, as df and du read them.
var sizeUnits = map[string]float64{
	"b": 1,
	"k": 1 << 10, "kb": 1e3, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1e6, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1e9, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1e12, "tib": 1 << 40,
	"p": 1 << 50, "pb": 1e15, "pib": 1 << 50,
}

// ParseThreshold reads a disk threshold: a percentage ("10%", "2.5%") or a size with its unit
// ("5GiB", "500MB", "1.5T"). A bare number is refused: check_disk reads one as MiB, df as KiB.
func ParseThreshold(s string) (Threshold, error) {
	bad := func(why string) (Threshold, error) {
		shown := s
		if len(shown) > maxThresholdLen {
			shown = shown[:maxThresholdLen] + "…"
		}
		return Threshold{}, fmt.Errorf("invalid disk threshold %q: %s", strings.ToValidUTF8(shown, "?"), why)
	}
	if s == "" {
		return bad("empty; give a percentage (\"10%\") or a size (\"5GiB\", \"500MB\")")
	}
	if len(s) > maxThresholdLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxThresholdLen))
	}
	n := numberPrefix(s)
	if n == 0 || s[0] == '+' || s[0] == '-' {
		return bad("want a non-negative number, then % or a unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)")
	}
	v, err := strconv.ParseFloat(s[:n], 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return bad("the number is out of range")
	}
	unit := strings.TrimSpace(s[n:])
	if unit == "%" {
		if v > 100 {
			return bad("a percentage is at most 100")
		}
		return Threshold{Percent: true, Value: v}, nil
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		if unit == "" {
			return bad("give a unit: % of the file system, or B, KB, KiB, MB, MiB, GB, GiB, TB, TiB")
		}
		return bad(fmt.Sprintf("unknown unit %q: want %% or B, KB, KiB, MB, MiB, GB, GiB, TB, TiB", unit))
	}
	v *= mult
	if v > math.MaxInt64 {
		return bad("larger than any file system")
	}
	return Threshold{Value: math.Floor(v)}, nil
}

// String writes the threshold back: a percentage with %, a size in bytes with B.
func (t Threshold) String() string {
	if t.Percent {
		return formatNumber(t.Value) + "%"
	}
	return formatNumber(t.Value) + "B"
}

// bytesOf is the free space, in bytes, that the threshold stands for on a file system of
// total bytes.
func (t Threshold) bytesOf(total float64) float64 {
	if t.Percent {
		return math.Floor(total * t.Value / 100)
	}
	return t.Value
}

// space is what a file system holds, in bytes (inodes in files): its size, the part of it that
// is used, and the part an unprivileged process may still use. Blocks reserved for root count
// in neither used nor avail, as check_disk and df count them.
type space struct {
	size, used, avail uint64
	files, filesFree  uint64
}

// errNoStatfs says that this system cannot tell a file system's free space.
var errNoStatfs = errors.New("disk checks need Linux")

// runDisk checks the free space of the file system that holds path against warn and crit, in
// check_disk's words and perfdata: the used bytes, with the used-space equivalents of the
// thresholds, 0 and the size. A file system that does not answer within the timeout (a hung
// network mount) is CRITICAL; the statfs call goes on, in the background, until the kernel
// ends it.
func (r *Runner) runDisk(ctx context.Context, s Spec, timeout time.Duration) Result {
	warnText, critText := s.Warn, s.Crit
	if warnText == "" {
		warnText = DefaultDiskWarn
	}
	if critText == "" {
		critText = DefaultDiskCrit
	}
	warn, err := ParseThreshold(warnText)
	if err == nil {
		var crit Threshold
		if crit, err = ParseThreshold(critText); err == nil {
			return r.diskSpace(ctx, s.Disk, warn, crit, timeout)
		}
	}
	return Result{State: Unknown, Output: "DISK UNKNOWN - " + err.Error()}
}

func (r *Runner) diskSpace(ctx context.Context, path string, warn, crit Threshold, timeout time.Duration) Result {
	type answer struct {
		sp  space
		err error
	}
	c := make(chan answer, 1)
	go func() {
		sp, err := statfs(path)
		c <- answer{sp, err}
	}()
	var a answer
	select {
	case a = <-c:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return Result{State: Unknown, Output: "check cancelled"}
		}
		return Result{State: Critical, Output: fmt.Sprintf("DISK CRITICAL - %s did not answer within %v", path, timeout)}
	}
	if errors.Is(a.err, errNoStatfs) {
		return Result{State: Unknown, Output: "DISK UNKNOWN - " + a.err.Error()}
	}
	if a.err != nil {
		return Result{State: Critical, Output: fmt.Sprintf("DISK CRITICAL - %s is not accessible: %s", path, oneLine(a.err.Error()))}
	}
	return diskResult(path, a.sp, warn, crit)
}

// diskResult judges sp against the thresholds: free space at or below crit is CRITICAL, else
// at or below warn WARNING. A percentage is of the space that unprivileged processes can have
// (used and available), as df's and check_disk's percentages are; the perfdata, as
// check_disk's, gives the file system's whole size and the thresholds as used space out of it.
func diskResult(path string, sp space, warn, crit Threshold) Result {
	usable := float64(sp.used) + float64(sp.avail)
	free := float64(sp.avail)
	state := OK
	switch {
	case free <= crit.bytesOf(usable):
		state = Critical
	case free <= warn.bytesOf(usable):
		state = Warning
	}
	size := max(float64(sp.size), usable)
	// Percentages as df shows them: used rounded up, free the rest.
	freePct := 100 - ceilPercent(sp.used, sp.used+sp.avail)
	detail := fmt.Sprintf("%d%%", freePct)
	if sp.files > 0 {
		detail += fmt.Sprintf(" inode=%d%%", 100-ceilPercent(sp.files-min(sp.filesFree, sp.files), sp.files))
	}
	label := clip(path, MaxLabelLen-len("…"))
	out := fmt.Sprintf("DISK %s - free space: %s %dMiB (%s);", state, label, sp.avail>>20, detail)
	usedAt := func(t Threshold) *Range {
		return &Range{End: math.Max(0, size-t.bytesOf(size))}
	}
	perf := Perf{Label: label, Value: float64(sp.used), UOM: "B", Warn: usedAt(warn), Crit: usedAt(crit),
		Min: float(0), Max: float(size)}
	return Result{State: state, Output: out, Perf: []Perf{perf}}
}

// ceilPercent is part of whole as a percentage, rounded up; 0 of nothing.
func ceilPercent(part, whole uint64) uint64 {
	if whole == 0 {
		return 0
	}
	return uint64(math.Ceil(float64(part) * 100 / float64(whole)))
}
