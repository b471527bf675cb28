package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// A follow reads on the agent's clock: what the processes append, prefixed when there are
// several, a line held back until its end comes; a log truncated by rotation is read again from
// its start; the follow ends after api.MaxLogsFollow.
func TestFollowOnTheClock(t *testing.T) {
	dir := t.TempDir()
	web, worker := filepath.Join(dir, "web.log"), filepath.Join(dir, "worker.log")
	os.WriteFile(web, []byte("old web line\n"), 0o644)
	appendTo := func(path, s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	tail := func(path string) func(int) ([]byte, error) {
		return func(int) ([]byte, error) {
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil // as supervise's tail of a process that has written nothing
			}
			return b, err
		}
	}
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	ls := logStream{clk: clk, req: api.LogsRequest{Tail: 10, Follow: true}, prefix: true, srcs: []logSource{
		{name: "web", path: web, tail: tail(web)}, {name: "worker", path: worker, tail: tail(worker)}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	ended := make(chan error, 1)
	go func() { err := ls.run(ctx, pw); pw.CloseWithError(err); ended <- err }()
	lines := bufio.NewScanner(pr)
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			if !lines.Scan() || lines.Text() != w {
				t.Fatalf("read %q (%v), want %q", lines.Text(), lines.Err(), w)
			}
		}
	}
	// step waits until the follow waits for its next look (the tails are out), has write write
	// to the files, and lets the look happen.
	step := func(write func()) {
		t.Helper()
		if err := clk.WaitPending(ctx, 1); err != nil {
			t.Fatal(err)
		}
		write()
		clk.Advance(followEvery)
	}
	expect("web | old web line")

	step(func() {
		appendTo(web, "new web line\nhalf a ")
		appendTo(worker, "worker line\n")
	})
	expect("web | new web line", "worker | worker line")
	step(func() { appendTo(web, "line\n") })
	expect("web | half a line")

	// Rotation copies the log aside and truncates it: the follow starts again from 0.
	step(func() {
		if err := os.Truncate(web, 0); err != nil {
			t.Fatal(err)
		}
		appendTo(web, "rotated\n")
	})
	expect("web | rotated")

	if err := clk.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(api.MaxLogsFollow)
	if err := <-ended; err != nil {
		t.Fatalf("follow ended with %v", err)
	}
	if lines.Scan() {
		t.Fatalf("more after the end: %q", lines.Text())
	}
}
