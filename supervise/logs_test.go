package supervise

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// appendLog writes to a log as a process would: appending.
func appendLog(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// logSizes returns the size of each of name's log files in dir.
func logSizes(t *testing.T, dir, name string) map[string]int64 {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, name+".log*"))
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes[filepath.Base(p)] = fi.Size()
	}
	return sizes
}

// However much is written, rotation keeps Keep older generations of at most MaxSize each,
// the newest lines in the newest files.
func TestRotationBounded(t *testing.T) {
	dir := t.TempDir()
	l := Logs{MaxSize: 4096, Keep: 2}
	live := logFile(dir, "web")
	if done, err := rotate(dir, "web", l); done || err != nil {
		t.Fatalf("rotate of a missing log: %v, %v", done, err)
	}
	line := 0
	for round := range 20 {
		var b strings.Builder
		for b.Len() < 3000+round*1000 {
			fmt.Fprintf(&b, "line %d\n", line)
			line++
		}
		appendLog(t, live, b.String())
		if _, err := rotate(dir, "web", l); err != nil {
			t.Fatal(err)
		}
		sizes := logSizes(t, dir, "web")
		var total int64
		for name, size := range sizes {
			total += size
			if name != "web.log" && size > l.MaxSize {
				t.Fatalf("round %d: %s holds %d bytes, more than %d", round, name, size, l.MaxSize)
			}
		}
		if len(sizes) > l.Keep+1 || total > int64(l.Keep+1)*l.MaxSize {
			t.Fatalf("round %d: files %v, %d bytes in all", round, sizes, total)
		}
	}
	// The newest generation ends with the last line written, at a whole line; the live file
	// was truncated.
	gen1 := readFile(t, generation(dir, "web", 1))
	if !strings.HasSuffix(gen1, fmt.Sprintf("line %d\n", line-1)) || !strings.HasPrefix(gen1, "line ") {
		t.Fatalf("newest generation: %.30q … %q", gen1, gen1[max(0, len(gen1)-30):])
	}
	if got := readFile(t, live); got != "" {
		t.Fatalf("live log after rotation holds %d bytes", len(got))
	}
	tailed, err := tail(dir, "web", 3)
	want := fmt.Sprintf("line %d\nline %d\nline %d\n", line-3, line-2, line-1)
	if err != nil || string(tailed) != want {
		t.Fatalf("tail after rotation = %q, %v; want %q", tailed, err, want)
	}
	// Lowering Keep removes the generations past it at the next rotation.
	appendLog(t, live, strings.Repeat("x\n", 3000))
	if _, err := rotate(dir, "web", Logs{MaxSize: 4096, Keep: 1}); err != nil {
		t.Fatal(err)
	}
	if sizes := logSizes(t, dir, "web"); len(sizes) != 2 {
		t.Fatalf("after lowering Keep to 1: %v", sizes)
	}
}

// The supervisor rotates on its clock, every RotateEvery.
func TestRotationOnTheClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	d := newDirs(t)
	s, err := Open(Config{StateDir: d.state, LogDir: d.logs, Clock: clk, RotateEvery: time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := sleeper("web")
	spec.Logs = Logs{MaxSize: 4096, Keep: 1}
	st := start(t, s, spec)
	defer killGroup(st.Pid, 9)
	appendLog(t, logFile(d.logs, "web"), strings.Repeat("0123456789\n", 1000))

	if err := clk.WaitDue(ctxT(t), time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	// The loop sets its next timer once it has rotated.
	if err := clk.WaitPending(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	sizes := logSizes(t, d.logs, "web")
	if sizes["web.log"] != 0 || sizes["web.log.1"] == 0 || sizes["web.log.1"] > 4096 {
		t.Fatalf("after a rotation period: %v", sizes)
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	live := logFile(dir, "web")
	if got, err := tail(dir, "web", 5); err != nil || len(got) != 0 {
		t.Fatalf("tail with no log = %q, %v", got, err)
	}
	appendLog(t, generation(dir, "web", 2), "a\nb\n")
	appendLog(t, generation(dir, "web", 1), "c\nd\n")
	appendLog(t, live, "e\nunfinished")
	for _, tt := range []struct {
		n    int
		want string
	}{
		{1, "unfinished"},
		{2, "e\nunfinished"},
		{3, "d\ne\nunfinished"},
		{6, "a\nb\nc\nd\ne\nunfinished"},
		{100, "a\nb\nc\nd\ne\nunfinished"},
	} {
		if got, err := tail(dir, "web", tt.n); err != nil || string(got) != tt.want {
			t.Errorf("tail %d = %q, %v; want %q", tt.n, got, err, tt.want)
		}
	}
	// Just rotated: the live file is empty, the lines are in the generations.
	os.Truncate(live, 0)
	if got, err := tail(dir, "web", 2); err != nil || string(got) != "c\nd\n" {
		t.Errorf("tail of a truncated log = %q, %v", got, err)
	}
	// A huge log is read only at its end, and a line cut by the limit is left out.
	huge := strings.Repeat("y", maxTailBytes) + "\nlast\n"
	appendLog(t, live, huge)
	got, err := tail(dir, "web", MaxTailLines)
	if err != nil || string(got) != "last\n" {
		t.Errorf("tail of a huge log = %d bytes starting %.20q, %v", len(got), got, err)
	}
}
