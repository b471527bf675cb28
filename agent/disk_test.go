package agent_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"golang.org/x/sys/unix"
)

// A release that does not fit on the disk is not half installed: with the agent's apps
// directory on a small filesystem (a tmpfs, which takes root), the running release keeps
// serving, the new one is reported failed with an error that names the lack of space and
// where, and nothing of the unpack is left to fill the disk. The agent tries again, but does
// not fill the disk again until there is more room; once there is, it installs the release.
func TestFullDiskDuringUnpack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs takes root")
	}
	dir := t.TempDir()
	apps := filepath.Join(dir, "apps")
	if err := os.Mkdir(apps, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", apps, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs on %s: %v", apps, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(apps, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", apps, err)
		}
	})
	r := newRig(t)
	// The agent's clock stands still until the test moves it: the failed install is not retried
	// while the test looks.
	clk := clock.NewFake(time.Now())
	logs := &lockedBuf{}
	n, na, sock, ready := r.serving(dir, clk, agent.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	port, pid := na.Ports["http"], na.Processes[0].PID
	before := used(t, apps)

	// 2 MiB that do not compress: the bundle downloads (beside the apps directory), and its
	// unpack fills the 1 MiB there.
	pad := make([]byte, 2<<20)
	rand.Read(pad)
	r.pushManifest("1.1.0", webService("1.1.0", false, sock), map[string]string{"pad.bin": string(pad)})
	r.deploy("hello@1.1.0", "site=ams")
	na = n.waitReport(t, nil, func(a api.NodeApp) bool { return a.Pending == "1.1.0" && a.Error != "" })
	want := "unpack hello 1.1.0: no space left on device (" + filepath.Join(apps, "hello", "releases")
	if !strings.Contains(na.Error, want) || na.Version != "1.0.0" || na.State != api.AppStateRunning ||
		len(na.Processes) != 1 || na.Processes[0].PID != pid {
		t.Fatalf("after the failed unpack: %+v\nwant an error with %q", na, want)
	}
	t.Logf("the agent reports: %s", na.Error)
	r.waitApp("n1", failedWith("1.1.0", "no space left on device"))
	if got := get(t, port); got != "200 1.0.0" {
		t.Fatalf("after the failed unpack the service answers %q", got)
	}
	if b, _ := os.Readlink(filepath.Join(apps, "hello/current")); b != "releases/1.0.0" {
		t.Fatalf("current -> %s", b)
	}
	left, _ := filepath.Glob(filepath.Join(apps, "hello/releases/*"))
	for _, p := range left {
		if b := filepath.Base(p); b != "1.0.0" && b != "1.0.0.json" {
			t.Errorf("left in releases/: %s", b)
		}
	}
	if after := used(t, apps); after > before+64<<10 {
		t.Errorf("the apps directory uses %d bytes, %d before the deploy", after, before)
	}

	// The retry (within a second) finds no more room than the unpack left, and does not unpack.
	wctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if err := clk.WaitDue(wctx, time.Second); err != nil {
		t.Fatalf("the agent is not waiting to try again: %v", err)
	}
	clk.Advance(time.Second)
	logs.waitCount(t, "not unpacking again: no more room", 1)

	// Room made, the next retry (within two seconds) installs 1.1.0.
	if err := unix.Mount("tmpfs", apps, "tmpfs", unix.MS_REMOUNT, "size=8m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	if err := clk.WaitDue(wctx, 2*time.Second); err != nil {
		t.Fatalf("the agent is not waiting to try again: %v", err)
	}
	clk.Advance(2 * time.Second)
	awaitReady(t, ready, "1.1.0")
	n.waitReport(t, clk, inState(api.AppStateRunning, "1.1.0"))
	if got := get(t, port); got != "200 1.1.0" {
		t.Fatalf("once there is room the service answers %q", got)
	}
}

// used is how many bytes the filesystem of dir has in use.
func used(t *testing.T, dir string) int64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	return int64(fs.Blocks-fs.Bfree) * fs.Bsize
}
