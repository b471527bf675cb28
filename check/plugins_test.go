//go:build linux

package check

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
)

// pluginDir is where Debian's monitoring-plugins-basic puts check_disk, check_tcp, check_load
// and check_http.
const pluginDir = "/usr/lib/nagios/plugins"

// debianPlugin returns the path of one of Debian's monitoring plugins, or skips the test saying
// how to get them.
func debianPlugin(t *testing.T, name string) string {
	t.Helper()
	p := pluginDir + "/" + name
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not installed: apt-get install monitoring-plugins-basic (make test does)", p)
	}
	return p
}

// perfOf returns the item labelled label, failing the test when there is none.
func perfOf(t *testing.T, res Result, label string) Perf {
	t.Helper()
	for _, p := range res.Perf {
		if p.Label == label {
			return p
		}
	}
	t.Fatalf("no perfdata %q in %+v", label, res)
	return Perf{}
}

// Debian's monitoring-plugins run unchanged through the exec runner: their exit codes are the
// states, their first line the output, their perfdata numbers.
func TestMonitoringPlugins(t *testing.T) {
	r := newRunner()
	run := func(args ...string) Result {
		t.Helper()
		return r.Run(context.Background(), Spec{Exec: args, Env: path})
	}

	t.Run("check_tcp", func(t *testing.T) {
		checkTCP := debianPlugin(t, "check_tcp")
		_, port, _ := net.SplitHostPort(acceptAndClose(t).Addr().String())
		res := run(checkTCP, "-H", "127.0.0.1", "-p", port)
		if p := perfOf(t, res, "time"); res.State != OK || !strings.HasPrefix(res.Output, "TCP OK") || p.UOM != "s" || p.Value < 0 {
			t.Fatalf("check_tcp: %+v", res)
		}
		_, closed, _ := net.SplitHostPort(closedPort(t))
		if res := run(checkTCP, "-H", "127.0.0.1", "-p", closed); res.State != Critical {
			t.Fatalf("check_tcp on a closed port: %+v", res)
		}
	})

	t.Run("check_http", func(t *testing.T) {
		checkHTTP := debianPlugin(t, "check_http")
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "fine") })
		mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
		srv := httptest.NewServer(mux)
		defer srv.Close()
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		res := run(checkHTTP, "-H", "127.0.0.1", "-p", port, "-u", "/healthz")
		if size := perfOf(t, res, "size"); res.State != OK || !strings.HasPrefix(res.Output, "HTTP OK: HTTP/1.1 200 OK") || size.Value < 4 || size.UOM != "B" {
			t.Fatalf("check_http: %+v", res)
		}
		if tm := perfOf(t, res, "time"); tm.UOM != "s" || tm.Min == nil || *tm.Min != 0 || tm.Max == nil || *tm.Max != 10 {
			t.Fatalf("check_http time: %s", tm)
		}
		if res := run(checkHTTP, "-H", "127.0.0.1", "-p", port, "-u", "/down"); res.State != Critical || !strings.Contains(res.Output, "503") {
			t.Fatalf("check_http on a failing endpoint: %+v", res)
		}
		if res := run(checkHTTP, "-H", "127.0.0.1", "-p", port, "-u", "/nowhere"); res.State != Warning || !strings.Contains(res.Output, "404") {
			t.Fatalf("check_http on a missing page: %+v", res)
		}
	})

	t.Run("check_load", func(t *testing.T) {
		checkLoad := debianPlugin(t, "check_load")
		res := run(checkLoad, "-w", "1000,1000,1000", "-c", "2000,2000,2000")
		if res.State != OK || !strings.HasPrefix(res.Output, "LOAD OK") || len(res.Perf) != 3 {
			t.Fatalf("check_load: %+v", res)
		}
		for _, label := range []string{"load1", "load5", "load15"} {
			p := perfOf(t, res, label)
			if p.Value < 0 || p.Warn == nil || p.Warn.End != 1000 || p.Crit == nil || p.Crit.End != 2000 || p.Min == nil || *p.Min != 0 {
				t.Fatalf("check_load %s: %s", label, p)
			}
		}
		// Thresholds of an impossible load: the plugin's usage error is UNKNOWN.
		if res := run(checkLoad, "-w", "lots"); res.State != Unknown {
			t.Fatalf("check_load with a bad argument: %+v", res)
		}
	})

	t.Run("check_disk", func(t *testing.T) {
		checkDisk := debianPlugin(t, "check_disk")
		dir := t.TempDir()
		res := run(checkDisk, "-w", "0%", "-c", "0%", "-p", dir)
		if res.State != OK || !strings.HasPrefix(res.Output, "DISK OK - free space: ") || len(res.Perf) != 1 {
			t.Fatalf("check_disk: %+v", res)
		}
		p := res.Perf[0]
		if p.UOM != "B" || p.Value <= 0 || p.Max == nil || *p.Max < p.Value || p.Warn == nil || p.Crit == nil {
			t.Fatalf("check_disk perfdata: %s", p)
		}
		if res := run(checkDisk, "-w", "100%", "-c", "100%", "-p", dir); res.State != Critical {
			t.Fatalf("check_disk over its thresholds: %+v", res)
		}
		// Ferry's own disk check agrees with check_disk on the free share and, to a thousandth
		// (check_disk leaves out a few blocks of its own reckoning), the size.
		own := r.Run(context.Background(), Spec{Disk: dir, Warn: "0%", Crit: "0%"})
		if own.State != OK || len(own.Perf) != 1 || math.Abs(*own.Perf[0].Max-*p.Max) > *p.Max/1000 {
			t.Fatalf("ferry's disk check: %+v, check_disk's size %v", own, *p.Max)
		}
		theirs, ours := freePercent(t, res.Output), freePercent(t, own.Output)
		if d := theirs - ours; d < -1 || d > 1 {
			t.Fatalf("check_disk says %d%% free, ferry %d%%:\n%s\n%s", theirs, ours, res.Output, own.Output)
		}
	})
}

// freePercent reads the free share out of a check_disk line: "... 70791MiB (75% inode=96%);".
func freePercent(t *testing.T, out string) int {
	t.Helper()
	_, after, ok := strings.Cut(out, "(")
	n, err := strconv.Atoi(strings.TrimRight(strings.Fields(after + " ")[0], "%);"))
	if !ok || err != nil {
		t.Fatalf("no free percentage in %q", out)
	}
	return n
}
