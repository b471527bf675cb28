package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// A hook that hangs is killed, with its process group, once hookTimeout has passed on the
// agent's clock, and the app's hooks log says so.
func TestHookTimesOut(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	a := &Agent{clk: clk, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	dir := t.TempDir()
	r := &appRun{name: "hello", dir: dir}
	rel := &releaseInfo{name: "1.0.0", dir: dir, version: "1.0.0", vars: map[string]string{}}
	done := make(chan error, 1)
	go func() {
		done <- a.hook(context.Background(), r, rel, stepPostInstall, []string{"sh", "-c", "echo migrating $FERRY_VERSION; exec sleep 100000"})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := clk.WaitDue(ctx, hookTimeout); err != nil {
		t.Fatal(err)
	}
	clk.Advance(hookTimeout - time.Second)
	select {
	case err := <-done:
		t.Fatalf("hook ended before its timeout: %v", err)
	default:
	}
	clk.Advance(time.Second)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not finish within 5m0s") {
			t.Fatalf("hook: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the hung hook was not killed")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "logs", hooksLog))
	if !strings.Contains(string(b), "post_install hook of 1.0.0") || !strings.Contains(a.hookTail(r), "post_install hook failed: did not finish") {
		t.Fatalf("hooks log:\n%s", b)
	}
}
