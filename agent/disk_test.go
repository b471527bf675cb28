package agent_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"golang.org/x/sys/unix"
)

// A release that does not fit on the disk is not half installed: with the agent's apps
// directory on a small filesystem (a tmpfs, which takes root), the running release keeps
// serving, the new one is reported failed with an error that names the lack of space and
// where, and nothing of the unpack is left to fill the disk.
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
	// The agent's clock stands still: the failed install is not retried while the test looks.
	n, na, sock, _ := r.serving(dir, clock.NewFake(time.Now()))
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
