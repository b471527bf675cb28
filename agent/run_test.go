package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
)

// TestMain runs, in helper mode, the service the tests deploy: an HTTP server on
// FERRY_PORT_HTTP that answers its version, with 500 when AGENT_TEST_SICK is set.
func TestMain(m *testing.M) {
	if v := os.Getenv("AGENT_TEST_SERVE"); v != "" {
		serve(v)
	}
	if dir := os.Getenv("AGENT_TEST_AGENT"); dir != "" {
		os.Exit(agentHelper(dir))
	}
	os.Exit(m.Run())
}

// agentHelper runs an agent on dir in this process, printing each change of its hello app as a
// line of JSON, and kills itself with SIGKILL before step AGENT_TEST_KILL_AT of its second
// install.
func agentHelper(dir string) int {
	step := os.Getenv("AGENT_TEST_KILL_AT")
	installs := 0
	fault := func(app, s string) error {
		if s == "download" {
			installs++
		}
		if installs == 2 && s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	a, err := agent.New(agent.Config{Server: os.Getenv("AGENT_TEST_SERVER"), Token: os.Getenv("AGENT_TEST_TOKEN"), DataDir: dir,
		Name: os.Getenv("AGENT_TEST_NAME"), Labels: map[string]string{"role": os.Getenv("AGENT_TEST_NAME")}, Fault: fault,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go a.Run(context.Background())
	for {
		apps, changed := a.Report()
		for _, na := range apps {
			if na.App == "hello" {
				b, _ := json.Marshal(na)
				fmt.Println(string(b))
			}
		}
		<-changed
	}
}

func serve(version string) {
	fmt.Println("serving", version, "on", os.Getenv("FERRY_PORT_HTTP"))
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("FERRY_PORT_HTTP"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// Tell the test the service listens, so that it moves its clock only then.
	if sock := os.Getenv("AGENT_TEST_READY"); sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			fmt.Fprintln(c, version)
			c.Close()
		}
	}
	status := http.StatusOK
	if os.Getenv("AGENT_TEST_SICK") != "" {
		status = http.StatusInternalServerError
	}
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, version)
	}))
	os.Exit(1)
}

// pushManifest builds hello@version from a manifest (its app, version and class lines added)
// and files, signs it and pushes it.
func (r *rig) pushManifest(version, manifest string, files map[string]string) api.Release {
	r.t.Helper()
	dir := r.t.TempDir()
	os.WriteFile(filepath.Join(dir, release.ManifestName), []byte("app: hello\nversion: "+version+"\nclass: minor\n"+manifest), 0o644)
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755)
	}
	var b bytes.Buffer
	if _, _, err := release.Build(dir, &b); err != nil {
		r.t.Fatal(err)
	}
	file := filepath.Join(r.t.TempDir(), "hello.tar.gz")
	os.WriteFile(file, b.Bytes(), 0o644)
	sigFile, err := signing.SignFile(r.key, file, "hello "+version)
	if err != nil {
		r.t.Fatal(err)
	}
	sig, _ := os.ReadFile(sigFile)
	rel, err := r.admin.PushRelease(r.ctx, bytes.NewReader(b.Bytes()), int64(b.Len()), sig)
	if err != nil {
		r.t.Fatal(err)
	}
	return rel
}

// webService is a manifest whose process web serves version on port http (sick: with 500),
// checked over HTTP; it says on the ready socket when it listens.
func webService(version string, sick bool, ready string) string {
	env := fmt.Sprintf("{AGENT_TEST_SERVE: %q, AGENT_TEST_READY: %q}", version, ready)
	if sick {
		env = fmt.Sprintf("{AGENT_TEST_SERVE: %q, AGENT_TEST_READY: %q, AGENT_TEST_SICK: \"1\"}", version, ready)
	}
	return fmt.Sprintf(`ports: [{name: http}]
processes:
  - name: web
    command: [%q, "-test.run=^$"]
    env: %s
update: {min_healthy_time: 2s, healthy_deadline: 5s}
checks:
  - {name: http, http: "http://127.0.0.1:${FERRY_PORT_HTTP}/healthz", interval: 1s, timeout: 5s}
`, os.Args[0], env)
}

// hello returns the node's hello app in the agent's report.
func (n *node) hello() (api.NodeApp, <-chan struct{}) {
	apps, changed := n.a.Report()
	for _, a := range apps {
		if a.App == "hello" {
			return a, changed
		}
	}
	return api.NodeApp{}, changed
}

// waitReport waits until the agent reports its hello app as ok wants. When clk is not nil, it
// moves clk on by a second each time a wait of at most two has begun (a verify's, a check's
// retry, a reconnection's) and the report does not yet satisfy ok.
func (n *node) waitReport(t *testing.T, clk *clock.Fake, ok func(api.NodeApp) bool) api.NodeApp {
	t.Helper()
	return n.waitReportWithin(t, clk, 2*time.Second, ok)
}

// waitReportWithin is waitReport moving the clock on when a wait of at most within has begun.
func (n *node) waitReportWithin(t *testing.T, clk *clock.Fake, within time.Duration, ok func(api.NodeApp) bool) api.NodeApp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		na, changed := n.hello()
		if ok(na) {
			return na
		}
		var due chan error
		dctx, dcancel := context.WithCancel(ctx)
		if clk != nil {
			due = make(chan error, 1)
			go func() { due <- clk.WaitDue(dctx, within) }()
		}
		select {
		case <-changed:
			dcancel()
			if due != nil {
				<-due
			}
		case err := <-due:
			dcancel()
			if err == nil {
				clk.Advance(time.Second)
			}
		case <-ctx.Done():
			dcancel()
			t.Fatalf("node %s: hello never reached the expected state; last: %+v", n.name, na)
		}
	}
}

// readySocket listens where test services say they listen; the channel receives their versions.
func readySocket(t *testing.T) (string, <-chan string) {
	path := filepath.Join(t.TempDir(), "ready.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Close()
			ch <- strings.TrimSpace(string(b))
		}
	}()
	return path, ch
}

// awaitReady waits until the service of version says it listens.
func awaitReady(t *testing.T, ready <-chan string, version string) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case v := <-ready:
			if v == version {
				return
			}
		case <-timeout.C:
			t.Fatalf("service %s never listened", version)
		}
	}
}

func inState(state, version string) func(api.NodeApp) bool {
	return func(a api.NodeApp) bool { return a.State == state && a.Version == version }
}

// killServices kills, when the test ends, the processes the agents on dir leave running.
func killServices(t *testing.T, dir string) {
	t.Cleanup(func() {
		for _, pid := range servicePids(t, dir) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
}

// servicePids reads the pids the hello app's supervisor records, by process name.
func servicePids(t *testing.T, dir string) map[string]int {
	b, err := os.ReadFile(filepath.Join(dir, "apps/hello/supervise/state.json"))
	if err != nil {
		return nil
	}
	var st struct {
		Processes map[string]struct {
			Pid int `json:"pid"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Errorf("supervisor state: %v", err)
	}
	out := map[string]int{}
	for name, p := range st.Processes {
		if p.Pid != 0 {
			out[name] = p.Pid
		}
	}
	return out
}

// alive says whether pid runs: a zombie does not (a process whose parent was killed may stay one
// when init does not reap it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if pid <= 0 || err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// get answers what the service on port says.
func get(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/healthz")
	if err != nil {
		t.Fatalf("service on port %d: %v", port, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// The agent runs what it installs: a release's process is started with its port, verified for
// min_healthy_time and by its check, restarted at once when it is killed; a new release whose
// process exits at start, or whose check fails, is rolled back to the release before, which
// serves again; a rolled-back release is not tried again until the assignment changes.
func TestServiceRunsAndRollsBack(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	killServices(t, dir)
	logs := &lockedBuf{}
	n := r.start("n1", dir, agent.Config{Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	sock, ready := readySocket(t)
	r.pushManifest("1.0.0", webService("1.0.0", false, sock), nil)
	r.deploy("hello@1.0.0", "site=ams")
	n.waitReport(t, nil, inState(api.AppStateVerifying, "1.0.0"))
	awaitReady(t, ready, "1.0.0")
	na := n.waitReport(t, clk, inState(api.AppStateRunning, "1.0.0"))
	port := na.Ports["http"]
	if port == 0 || len(na.Processes) != 1 || na.Processes[0].PID == 0 || na.Processes[0].State != "running" || na.Pending != "" || na.Error != "" {
		t.Fatalf("running: %+v", na)
	}
	if got := get(t, port); got != "200 1.0.0" {
		t.Fatalf("service answers %q", got)
	}
	pid := na.Processes[0].PID

	t.Run("a killed process is started again at once", func(t *testing.T) {
		before := clk.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		na := n.waitReport(t, nil, func(a api.NodeApp) bool {
			return len(a.Processes) == 1 && a.Processes[0].PID != 0 && a.Processes[0].PID != pid && a.Processes[0].State == "running"
		})
		if na.State != api.AppStateRunning || na.Processes[0].Restarts != 1 || na.Processes[0].LastExit == nil || na.Processes[0].LastExit.Signal != "killed" {
			t.Fatalf("after the kill: %+v %+v", na, na.Processes[0].LastExit)
		}
		if !clk.Now().Equal(before) {
			t.Fatal("the restart waited on the clock")
		}
		pid = na.Processes[0].PID
		awaitReady(t, ready, "1.0.0")
		if got := get(t, port); got != "200 1.0.0" {
			t.Fatalf("service answers %q", got)
		}
	})

	t.Run("a release whose process exits at start is rolled back", func(t *testing.T) {
		r.pushManifest("1.1.0", "ports: [{name: http}]\nprocesses:\n  - name: web\n    command: [sh, -c, \"echo boom on port $FERRY_PORT_HTTP; exit 3\"]\n"+
			"update: {min_healthy_time: 2s, healthy_deadline: 5s}\n", nil)
		r.deploy("hello@1.1.0", "site=ams")
		// It fails at once, without the clock; then 1.0.0 starts again and is verified.
		awaitReady(t, ready, "1.0.0")
		na := n.waitReport(t, clk, inState(api.AppStateRolledBack, "1.0.0"))
		if na.Pending != "1.1.0" || !strings.Contains(na.Error, "web exited") || !strings.Contains(na.LogTail, "boom on port "+strconv.Itoa(port)) {
			t.Fatalf("rolled back: %+v", na)
		}
		if got := get(t, port); got != "200 1.0.0" {
			t.Fatalf("after the rollback the service answers %q", got)
		}
		if b, _ := os.Readlink(filepath.Join(dir, "apps/hello/current")); b != "releases/1.0.0" {
			t.Fatalf("current -> %s", b)
		}
		// Not tried again: another change of the desired state leaves it rolled back.
		if _, err := r.admin.Label(r.ctx, "n1", api.LabelChange{Set: map[string]string{"zone": "b"}}); err != nil {
			t.Fatal(err)
		}
		logs.waitCount(t, "not trying a release that did not stay again", 1)
		if c := strings.Count(logs.String(), "msg=installing node=n1 app=hello version=1.1.0"); c != 1 {
			t.Fatalf("the rolled-back release was tried %d times", c)
		}
		if na, _ := n.hello(); na.State != api.AppStateRolledBack || na.Version != "1.0.0" {
			t.Fatalf("after another change: %+v", na)
		}
	})

	t.Run("a release whose check fails is rolled back", func(t *testing.T) {
		r.pushManifest("1.2.0", webService("1.2.0", true, sock), nil)
		r.deploy("hello@1.2.0", "site=ams")
		awaitReady(t, ready, "1.2.0")
		n.waitReport(t, clk, func(a api.NodeApp) bool { return a.Version == "1.0.0" && a.Pending == "1.2.0" })
		awaitReady(t, ready, "1.0.0")
		na := n.waitReport(t, clk, func(a api.NodeApp) bool { return a.State == api.AppStateRolledBack && a.Pending == "1.2.0" })
		if na.Version != "1.0.0" || !strings.Contains(na.Error, "check http") || !strings.Contains(na.Error, "500") || !strings.Contains(na.LogTail, "serving 1.2.0") {
			t.Fatalf("rolled back: %+v", na)
		}
		if got := get(t, port); got != "200 1.0.0" {
			t.Fatalf("after the rollback the service answers %q", got)
		}
	})

	t.Run("the running release assigned again is running", func(t *testing.T) {
		r.deploy("hello@1.0.0", "site=ams")
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(logs.String())
			}
		})
		na := n.waitReport(t, clk, func(a api.NodeApp) bool { return a.State == api.AppStateRunning && a.Pending == "" })
		if na.Version != "1.0.0" || na.Error != "" || na.LogTail != "" || na.Ports["http"] != port {
			t.Fatalf("back on 1.0.0: %+v", na)
		}
	})
}

var errCrash = errors.New("agent crashed (test)")

// An agent killed at any step of an install leaves the node at a whole release, old or new;
// until the old release's processes are stopped they kept running, and once the new ones are
// started a restarted agent adopts them (same pids, same ports). The restarted agent finishes
// the install.
func TestCrashAtEveryStep(t *testing.T) {
	r := newRig(t)
	manifest := `ports: [{name: http}]
processes:
  - name: web
    command: [sh, -c, "echo up on $0; exec sleep 100000", "${FERRY_PORT_HTTP}"]
update: {min_healthy_time: 0s}
hooks: {post_install: [sh, -c, "echo installed"], pre_stop: [sh, -c, "echo stopping"], post_start: [sh, -c, "echo started"]}
`
	r.pushManifest("1.0.0", manifest, nil)
	r.pushManifest("1.1.0", manifest, nil)
	steps := agent.Steps()
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			name := "crash-" + strings.ReplaceAll(step, "_", "-")
			dir := t.TempDir()
			killServices(t, dir)
			var armed atomic.Bool
			crashed := make(chan struct{})
			fault := func(app, s string) error {
				if armed.Load() && s == step {
					armed.Store(false)
					close(crashed)
					return errCrash
				}
				return nil
			}
			n := r.start(name, dir, agent.Config{Clock: clock.NewFake(time.Now()), Fault: fault})
			r.deploy("hello@1.0.0", "role="+name)
			old := n.waitReport(t, nil, inState(api.AppStateRunning, "1.0.0"))
			oldPid := old.Processes[0].PID

			armed.Store(true)
			r.deploy("hello@1.1.0", "role="+name)
			select {
			case <-crashed:
			case <-time.After(20 * time.Second):
				t.Fatal("the install never reached the step")
			}
			n.stop()

			cur, err := os.Readlink(filepath.Join(dir, "apps/hello/current"))
			if err != nil || (cur != "releases/1.0.0" && cur != "releases/1.1.0") {
				t.Fatalf("after the crash current -> %q (%v)", cur, err)
			}
			for _, f := range []string{"ferry.yaml", "../" + filepath.Base(cur) + ".json"} {
				if _, err := os.Stat(filepath.Join(dir, "apps/hello", cur, f)); err != nil {
					t.Fatalf("current release is not whole: %v", err)
				}
			}
			stopAt := slices.Index(steps, "stop")
			if i < stopAt && (!alive(oldPid) || cur != "releases/1.0.0") {
				t.Fatalf("crash before the stop: old process alive %v, current -> %s", alive(oldPid), cur)
			}
			atCrash := servicePids(t, dir)["web"]

			n = r.start(name, dir, agent.Config{Clock: clock.NewFake(time.Now())})
			t.Cleanup(n.stop) // before killServices: the rig's cleanup comes only at the test's end
			na := n.waitReport(t, nil, func(a api.NodeApp) bool {
				return a.State == api.AppStateRunning && a.Version == "1.1.0" && a.Pending == ""
			})
			if len(na.Processes) != 1 || !alive(na.Processes[0].PID) || na.Ports["http"] != old.Ports["http"] {
				t.Fatalf("after the restart: %+v (before: ports %v)", na, old.Ports)
			}
			if i > slices.Index(steps, "start") && na.Processes[0].PID != atCrash {
				t.Fatalf("the new release's process %d was not adopted: now %d", atCrash, na.Processes[0].PID)
			}
			if alive(oldPid) {
				t.Fatalf("the old release's process %d still runs", oldPid)
			}
		})
	}
}

// A first install whose process exits is failed, with nothing current; a process of a running
// release that keeps dying puts the app in crashloop, and the app is running again once the
// process stays up; a release whose post_install hook fails is failed before anything is
// stopped: the running release keeps its process.
func TestFailedCrashloopAndHooks(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	killServices(t, dir)
	n := r.start("n1", dir, agent.Config{Clock: clk})

	r.pushManifest("0.9.0", "processes:\n  - name: web\n    command: [sh, -c, \"echo no luck; exit 1\"]\n"+
		"update: {min_healthy_time: 1s, healthy_deadline: 5s}\n", nil)
	r.deploy("hello@0.9.0", "site=ams")
	na := n.waitReport(t, clk, func(a api.NodeApp) bool { return a.State == api.AppStateFailed })
	if na.Version != "" || na.Pending != "0.9.0" || !strings.Contains(na.Error, "web exited") || !strings.Contains(na.LogTail, "no luck") {
		t.Fatalf("failed first install: %+v", na)
	}
	if _, err := os.Readlink(filepath.Join(dir, "apps/hello/current")); err == nil {
		t.Fatal("a failed first install left a current release")
	}

	flag := filepath.Join(t.TempDir(), "crash")
	r.pushManifest("1.0.0", fmt.Sprintf(`processes:
  - name: web
    command: [sh, -c, "if [ -e \"$CRASH\" ]; then echo crashing; exit 1; fi; exec sleep 100000"]
    env: {CRASH: %q}
    restart: {burst: 2, window: 3s, backoff_max: 1s}
update: {min_healthy_time: 1s, healthy_deadline: 5s}
hooks: {post_start: [sh, -c, "echo started $FERRY_VERSION"]}
`, flag), nil)
	r.deploy("hello@1.0.0", "site=ams")
	na = n.waitReport(t, clk, inState(api.AppStateRunning, "1.0.0"))
	pid := na.Processes[0].PID

	t.Run("crashloop", func(t *testing.T) {
		os.WriteFile(flag, nil, 0o644)
		syscall.Kill(pid, syscall.SIGKILL)
		na := n.waitReport(t, clk, inState(api.AppStateCrashloop, "1.0.0"))
		if p := na.Processes[0]; p.State != "crashloop" || p.Restarts < 2 || p.LastExit == nil {
			t.Fatalf("crashloop: %+v %+v", na, p.LastExit)
		}
		os.Remove(flag)
		na = n.waitReportWithin(t, clk, 5*time.Second, inState(api.AppStateRunning, "1.0.0"))
		pid = na.Processes[0].PID
		if !alive(pid) {
			t.Fatalf("running again, but process %d is gone", pid)
		}
	})

	t.Run("a failing post_install hook stops nothing", func(t *testing.T) {
		r.pushManifest("1.1.0", "processes:\n  - name: web\n    command: [sh, -c, \"exec sleep 100000\"]\n"+
			"hooks: {post_install: [sh, -c, \"echo migration failed; exit 4\"]}\n", nil)
		r.deploy("hello@1.1.0", "site=ams")
		na := n.waitReport(t, clk, func(a api.NodeApp) bool { return a.State == api.AppStateFailed && a.Pending == "1.1.0" })
		if na.Version != "1.0.0" || !strings.Contains(na.Error, "post_install") || !strings.Contains(na.LogTail, "migration failed") ||
			len(na.Processes) != 1 || na.Processes[0].PID != pid || !alive(pid) {
			t.Fatalf("after the failed hook: %+v", na)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "apps/hello/logs/_hooks.log")); !strings.Contains(string(b), "started 1.0.0") {
			t.Fatalf("hooks log:\n%s", b)
		}
	})

}

// An agent killed at any step of a rollback leaves the node at a whole release; a restarted
// agent finishes the rollback (adopting the old release's processes once they are started
// again) and does not try the failed release again.
func TestCrashWhileRollingBack(t *testing.T) {
	r := newRig(t)
	good := `ports: [{name: http}]
processes:
  - name: web
    command: [sh, -c, "echo up on $0; exec sleep 100000", "${FERRY_PORT_HTTP}"]
update: {min_healthy_time: 0s}
`
	r.pushManifest("1.0.0", good, nil)
	r.pushManifest("1.2.0", "ports: [{name: http}]\nprocesses:\n  - name: web\n    command: [sh, -c, \"echo bad; exit 1\"]\nupdate: {min_healthy_time: 1s}\n", nil)
	steps := agent.Steps()
	for _, step := range steps[slices.Index(steps, "pre_stop"):] {
		t.Run(step, func(t *testing.T) {
			name := "back-" + strings.ReplaceAll(step, "_", "-")
			dir := t.TempDir()
			killServices(t, dir)
			var armed, back atomic.Bool
			crashed := make(chan struct{})
			fault := func(app, s string) error {
				if !armed.Load() {
					return nil
				}
				if back.Load() && s == step {
					armed.Store(false)
					close(crashed)
					return errCrash
				}
				if s == "verify" { // the new release's verify, which fails: what follows is the way back
					back.Store(true)
				}
				return nil
			}
			n := r.start(name, dir, agent.Config{Clock: clock.NewFake(time.Now()), Fault: fault})
			r.deploy("hello@1.0.0", "role="+name)
			old := n.waitReport(t, nil, inState(api.AppStateRunning, "1.0.0"))
			armed.Store(true)
			r.deploy("hello@1.2.0", "role="+name)
			select {
			case <-crashed:
			case <-time.After(20 * time.Second):
				t.Fatal("the rollback never reached the step")
			}
			n.stop()
			cur, err := os.Readlink(filepath.Join(dir, "apps/hello/current"))
			if err != nil || (cur != "releases/1.0.0" && cur != "releases/1.2.0") {
				t.Fatalf("after the crash current -> %q (%v)", cur, err)
			}
			atCrash := servicePids(t, dir)["web"]

			n = r.start(name, dir, agent.Config{Clock: clock.NewFake(time.Now())})
			t.Cleanup(n.stop)
			na := n.waitReport(t, nil, inState(api.AppStateRolledBack, "1.0.0"))
			if na.Pending != "1.2.0" || !strings.Contains(na.Error, "web exited") || len(na.Processes) != 1 || !alive(na.Processes[0].PID) ||
				na.Ports["http"] != old.Ports["http"] {
				t.Fatalf("after the restart: %+v", na)
			}
			if slices.Index(steps, step) > slices.Index(steps, "start") && na.Processes[0].PID != atCrash {
				t.Fatalf("the old release's process %d was not adopted: now %d", atCrash, na.Processes[0].PID)
			}
			if b, _ := os.Readlink(filepath.Join(dir, "apps/hello/current")); b != "releases/1.0.0" {
				t.Fatalf("current -> %s", b)
			}
		})
	}
}

// An agent that starts with processes that no assigned app claims stops them; when the app is
// assigned again, its current release runs again.
func TestUnclaimedProcessesStopped(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	killServices(t, dir)
	n := r.start("n1", dir, agent.Config{Clock: clock.NewFake(time.Now())})
	r.pushManifest("1.0.0", "processes:\n  - name: web\n    command: [sh, -c, \"exec sleep 100000\"]\nupdate: {min_healthy_time: 0s}\n", nil)
	r.deploy("hello@1.0.0", "site=ams")
	old := n.waitReport(t, nil, inState(api.AppStateRunning, "1.0.0"))
	n.stop()

	// The agent last heard of a desired state without hello (as after an undeploy).
	var d api.Desired
	b, err := os.ReadFile(filepath.Join(dir, "desired.json"))
	if err != nil || json.Unmarshal(b, &d) != nil || len(d.Apps) != 1 {
		t.Fatalf("desired.json: %s %v", b, err)
	}
	d.Apps, d.Generation = nil, 1
	b, _ = json.Marshal(d)
	os.WriteFile(filepath.Join(dir, "desired.json"), b, 0o600)

	n = r.start("n1", dir, agent.Config{Clock: clock.NewFake(time.Now())})
	na := n.waitReport(t, nil, func(a api.NodeApp) bool {
		return a.State == api.AppStateRunning && len(a.Processes) == 1 && a.Processes[0].PID != old.Processes[0].PID && a.Processes[0].PID != 0
	})
	if alive(old.Processes[0].PID) || !alive(na.Processes[0].PID) {
		t.Fatalf("the unclaimed process %d still runs, or the new one %d does not", old.Processes[0].PID, na.Processes[0].PID)
	}
}

// An agent process killed with SIGKILL before any step of an install leaves the node at a
// whole release, with the old release's process still running until its stop; a new agent on
// the data directory finishes the install, adopting the new release's process when it was
// already started.
func TestKill9AtEveryStep(t *testing.T) {
	r := newRig(t)
	manifest := "processes:\n  - name: web\n    command: [sh, -c, \"exec sleep 100000\"]\nupdate: {min_healthy_time: 0s}\n" +
		"hooks: {post_install: [sh, -c, \"echo installed\"], pre_stop: [sh, -c, \"echo stopping\"], post_start: [sh, -c, \"echo started\"]}\n"
	r.pushManifest("1.0.0", manifest, nil)
	r.pushManifest("1.1.0", manifest, nil)
	steps := agent.Steps()
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			name := "kill-" + strings.ReplaceAll(step, "_", "-")
			dir := t.TempDir()
			killServices(t, dir)
			h := exec.Command(os.Args[0], "-test.run=^$")
			h.Env = append(os.Environ(), "AGENT_TEST_AGENT="+dir, "AGENT_TEST_KILL_AT="+step, "AGENT_TEST_SERVER="+r.addr,
				"AGENT_TEST_TOKEN="+r.token, "AGENT_TEST_NAME="+name)
			h.Stderr = os.Stderr
			out, err := h.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Process.Kill(); h.Wait() })
			reports := make(chan api.NodeApp, 100)
			go func() {
				defer close(reports)
				dec := json.NewDecoder(out)
				for {
					var na api.NodeApp
					if dec.Decode(&na) != nil {
						return
					}
					reports <- na
				}
			}()
			ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
			defer cancel()
			if _, err := r.admin.WaitEvent(ctx, 0, func(e api.Event) bool { return e.Type == "node.enrolled" && e.Subject == name }); err != nil {
				t.Fatal(err)
			}
			r.deploy("hello@1.0.0", "role="+name)
			var old api.NodeApp
			for old.State != api.AppStateRunning || old.Version != "1.0.0" {
				select {
				case na, ok := <-reports:
					if !ok {
						t.Fatal("the agent ended before 1.0.0 ran")
					}
					old = na
				case <-ctx.Done():
					t.Fatalf("1.0.0 never ran: %+v", old)
				}
			}
			oldPid := old.Processes[0].PID
			r.deploy("hello@1.1.0", "role="+name)
			for range reports { // until the agent is killed
			}
			if err := h.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("the agent ended with %v, not killed", err)
			}

			cur, err := os.Readlink(filepath.Join(dir, "apps/hello/current"))
			if err != nil || (cur != "releases/1.0.0" && cur != "releases/1.1.0") {
				t.Fatalf("after the kill current -> %q (%v)", cur, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "apps/hello", cur, "ferry.yaml")); err != nil {
				t.Fatalf("current release is not whole: %v", err)
			}
			if i < slices.Index(steps, "stop") && (!alive(oldPid) || cur != "releases/1.0.0") {
				t.Fatalf("killed before the stop: old process alive %v, current -> %s", alive(oldPid), cur)
			}
			atKill := servicePids(t, dir)["web"]

			n := r.start(name, dir, agent.Config{Clock: clock.NewFake(time.Now())})
			t.Cleanup(n.stop)
			na := n.waitReport(t, nil, func(a api.NodeApp) bool {
				return a.State == api.AppStateRunning && a.Version == "1.1.0" && a.Pending == ""
			})
			if len(na.Processes) != 1 || !alive(na.Processes[0].PID) || alive(oldPid) {
				t.Fatalf("after the restart: %+v; old process %d alive: %v", na, oldPid, alive(oldPid))
			}
			if i > slices.Index(steps, "start") && na.Processes[0].PID != atKill {
				t.Fatalf("the new release's process %d was not adopted: now %d", atKill, na.Processes[0].PID)
			}
		})
	}
}

// An operator's stop, start and restart reach the agent through the desired state: stopped, the
// app's processes end and stay ended across a restart of the agent; started, they run again;
// restarted, they run with new pids and the report counts the restart.
func TestOperatorStopStartRestart(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	killServices(t, dir)
	n := r.start("n1", dir, agent.Config{Clock: clk})
	r.pushManifest("1.0.0", "processes:\n  - name: web\n    command: [sh, -c, \"exec sleep 100000\"]\nupdate: {min_healthy_time: 0s}\n", nil)
	r.deploy("hello@1.0.0", "site=ams")
	na := n.waitReport(t, clk, inState(api.AppStateRunning, "1.0.0"))
	pid := na.Processes[0].PID
	control := func(action string) {
		t.Helper()
		if res, err := r.admin.ControlApp(r.ctx, api.AppControl{App: "hello", Action: action, Nodes: []string{"n1"}}); err != nil || len(res.Nodes) != 1 {
			t.Fatalf("%s: %+v %v", action, res, err)
		}
	}

	control(api.AppStop)
	n.waitReport(t, clk, func(a api.NodeApp) bool { return a.State == api.AppStateStopped })
	if alive(pid) {
		t.Fatalf("process %d still runs after a stop", pid)
	}
	// Stopped stays stopped when the agent starts again.
	n.stop()
	n = r.start("n1", dir, agent.Config{Clock: clk})
	n.waitReport(t, clk, func(a api.NodeApp) bool { return a.State == api.AppStateStopped })

	control(api.AppStart)
	na = n.waitReport(t, clk, func(a api.NodeApp) bool {
		return a.State == api.AppStateRunning && len(a.Processes) == 1 && a.Processes[0].PID != 0
	})
	pid = na.Processes[0].PID

	control(api.AppRestart)
	na = n.waitReport(t, clk, func(a api.NodeApp) bool {
		return a.Restarted == 1 && len(a.Processes) == 1 && a.Processes[0].PID != 0 && a.Processes[0].PID != pid && a.Processes[0].State == "running"
	})
	if alive(pid) || na.State != api.AppStateRunning {
		t.Fatalf("after the restart: old process alive %v, %+v", alive(pid), na)
	}

	// Undeployed: the processes end, and the app's releases, logs and state go.
	pid = na.Processes[0].PID
	if res, err := r.admin.Undeploy(r.ctx, api.Undeploy{App: "hello", Selector: "site=ams"}); err != nil || len(res.Nodes) != 1 {
		t.Fatalf("undeploy: %+v %v", res, err)
	}
	n.waitReport(t, clk, func(a api.NodeApp) bool { return a.App == "" })
	if alive(pid) {
		t.Fatalf("process %d still runs after the undeploy", pid)
	}
	if _, err := os.Stat(filepath.Join(dir, "apps", "hello")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the app's directory after the undeploy: %v", err)
	}
}
