// Command rollout is Ferry's rollout benchmark (issue 10). It starts a real `ferry server`,
// enrolls N virtual agents over S sites (each site its own token, the agents spread over them in
// turn), pushes two small releases, deploys the first everywhere, then starts a rollout of the
// second with a policy of W waves and max_parallel P and follows the event log until it ends.
// Each virtual agent answers its assignment as a real agent's report would, on the real clock:
// installing, verifying after half the install time, running after the whole of it. A share of
// the agents fails the new release (rolled_back, the release pending) and a share leaves before
// the rollout, so that the server marks them down.
//
// It reports the rollout's wall time against the ideal schedule, per wave and in all, and the
// server's CPU time (from /proc) per node moved, beside what the server spends idle over as
// long with the same agents connected.
//
// The ideal of a wave with n nodes, u of them down, is max(⌈(n − u) / p⌉ × install,
// unreachable_deadline if u > 0) + soak, where p is the wave's max_parallel: lock-step batches
// of p nodes, each taking exactly the install time, and a wave with down nodes waiting out their
// deadline, which starts with the wave (its down nodes are judged unreachable in its first
// step). A failing node holds its slot for the install time, as a healthy one does. With equal
// waves and nothing down this is PRODUCT.md's waves × ⌈nodes / parallel⌉ × install time + soak.
//
//	go run ./bench/rollout -agents 10000 -sites 50 -waves 4 -parallel 500 -install 2s
//	go run ./bench/rollout -agents 10000 -sites 50 -waves 4 -parallel 500 -install 2s -offline 0.02 -fail 0.01
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/release"
)

type options struct {
	agents, sites, waves, parallel int
	shares                         string
	install, soak, deadline        time.Duration
	threshold                      string
	offline, fail                  float64
	interval, grace, idle, timeout time.Duration
	bin, logs, profile             string
	tls                            bool
}

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 1000, "virtual agents")
	flag.IntVar(&o.sites, "sites", 50, "sites the agents are spread over")
	flag.IntVar(&o.waves, "waves", 4, "waves of the rollout")
	flag.StringVar(&o.shares, "shares", "", "percent of the target each wave but the last takes, comma-separated (default: equal waves); the last takes the rest")
	flag.IntVar(&o.parallel, "parallel", 500, "max_parallel of every wave")
	flag.DurationVar(&o.install, "install", 2*time.Second, "simulated install time of each node")
	flag.DurationVar(&o.soak, "soak", 0, "soak of every wave")
	flag.DurationVar(&o.deadline, "unreachable-deadline", 2*time.Second, "unreachable_deadline of every wave")
	flag.StringVar(&o.threshold, "failure-threshold", "5%", "failure_threshold of every wave")
	flag.Float64Var(&o.offline, "offline", 0, "share of the agents that leave before the rollout")
	flag.Float64Var(&o.fail, "fail", 0, "share of the agents that fail the new release")
	flag.DurationVar(&o.interval, "heartbeat-interval", 10*time.Second, "the server's --heartbeat-interval")
	flag.DurationVar(&o.grace, "heartbeat-grace", 30*time.Second, "the server's --heartbeat-grace: how soon agents that left are down")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "window over which the server's idle CPU is measured before the rollout")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "how long the rollout may take before the harness gives up")
	flag.StringVar(&o.bin, "ferry", "", "ferry binary (default: build ./cmd/ferry)")
	flag.StringVar(&o.logs, "logs", "", "directory for the server's log (default: in the scratch directory, removed)")
	flag.StringVar(&o.profile, "cpuprofile", "", "directory for a CPU profile of the server over the rollout (runs bench/profserver)")
	flag.BoolVar(&o.tls, "tls", false, "serve TLS (default: --insecure-http)")
	flag.Parse()
	if _, err := o.shareList(); err != nil {
		fmt.Fprintln(os.Stderr, "rollout:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "rollout:", err)
		os.Exit(1)
	}
}

// shareList returns the percent of the target of each wave but the last.
func (o options) shareList() ([]int, error) {
	if o.waves < 1 {
		return nil, errors.New("-waves must be at least 1")
	}
	if o.shares == "" {
		out := make([]int, o.waves-1)
		for i := range out {
			out[i] = 100 / o.waves
		}
		return out, nil
	}
	var out []int
	for _, f := range strings.Split(o.shares, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 || v > 100 {
			return nil, fmt.Errorf("-shares %q: want percents from 1 to 100", o.shares)
		}
		out = append(out, v)
	}
	if len(out) != o.waves-1 {
		return nil, fmt.Errorf("-shares gives %d percents; -waves %d wants %d (the last wave takes the rest)", len(out), o.waves, o.waves-1)
	}
	return out, nil
}

// policy is the rollout's policy: the waves of -shares, each with the same limits, and a halt
// that pauses (nothing is rolled back) when a wave's failures reach the threshold.
func (o options) policy() string {
	shares, _ := o.shareList()
	var b strings.Builder
	b.WriteString("name: bench\non_failure: pause\nwaves:\n")
	for i := range o.waves {
		fmt.Fprintf(&b, "  - name: w%d\n", i+1)
		if i < len(shares) {
			fmt.Fprintf(&b, "    percent: %d\n", shares[i])
		}
		fmt.Fprintf(&b, "    max_parallel: %d\n    failure_threshold: %q\n    unreachable_deadline: %s\n", o.parallel, o.threshold, o.deadline)
		if o.soak > 0 {
			fmt.Fprintf(&b, "    soak: %s\n", o.soak)
		}
	}
	return b.String()
}

const app = "bench"

func run(o options) error {
	ws, err := fleet.NewWorkspace("ferry-rolloutbench-", o.logs, o.bin)
	if err != nil {
		return err
	}
	defer ws.Close()
	so := fleet.ServerOptions{Plain: !o.tls, Args: []string{
		"--heartbeat-interval", o.interval.String(), "--heartbeat-grace", o.grace.String(), "--log-level", "warn",
		// n agents enroll from one address: the per-address limit would pace the enrollment.
		"--public-rate", "100000/s", "--public-burst", "100000"}}
	if o.profile != "" {
		if ws.Bin, err = profctl.Build(ws.Dir, "", o.profile); err != nil {
			return err
		}
		so.Control = fleet.FreePort()
	}
	srv, err := fleet.StartServerWith(ws.Bin, filepath.Join(ws.Dir, "server"), ws.Logs, so)
	if err != nil {
		return err
	}
	defer srv.Stop()
	ctx := context.Background()
	key, err := srv.TrustNewKey(ctx, filepath.Join(ws.Dir, "keys"))
	if err != nil {
		return err
	}
	// Agent i is at site i mod S; agents that fail or leave are picked evenly among them.
	agents := make([]*vagent, o.agents)
	perSite := make([]int, o.sites)
	for i := range agents {
		perSite[i%o.sites]++
	}
	every := func(share float64, offset int) func(int) bool {
		if share <= 0 {
			return func(int) bool { return false }
		}
		k := int(1 / share)
		return func(i int) bool { return i%k == offset%k }
	}
	fails, offline := every(o.fail, 7), every(o.offline, 13)
	tokens := make([]string, o.sites)
	for s := range o.sites {
		name := fmt.Sprintf("site-%02d", s)
		if _, err := srv.Admin.AddSite(ctx, client.SiteAdd{Name: name, Tier: 2}); err != nil {
			return err
		}
		tok, err := srv.Admin.CreateToken(ctx, api.TokenCreate{Site: name, Uses: perSite[s]})
		if err != nil {
			return err
		}
		tokens[s] = tok.Secret
	}
	var rels [2]api.Release
	for i, v := range []string{"1.0.0", "2.0.0"} {
		if rels[i], err = push(ctx, srv, ws.Dir, v, key); err != nil {
			return fmt.Errorf("push %s: %w", v, err)
		}
	}
	f := &fleetRun{app: app, install: o.install, interval: o.interval, rollout: rels[1].Version}

	start := time.Now()
	if err := fleet.Parallel(o.agents, 32, func(i int) error {
		site := i % o.sites
		id, err := fleet.EnrollVirtual(ctx, srv.Admin, tokens[site], fmt.Sprintf("n%05d", i), map[string]string{"bench": "rollout"})
		agents[i] = &vagent{Identity: id, site: fmt.Sprintf("site-%02d", site), fails: fails(i), offline: offline(i)}
		return err
	}); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	fmt.Printf("enrolled %d agents over %d sites in %v\n", o.agents, o.sites, time.Since(start).Round(time.Millisecond))
	// At most 256 streams are being opened at once (as bench/loadgen does).
	opening := make(chan struct{}, 256)
	if err := fleet.Parallel(o.agents, 512, func(i int) error {
		return agents[i].connect(ctx, srv.Admin, f, opening)
	}); err != nil {
		return fmt.Errorf("open streams: %w", err)
	}
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	fmt.Printf("%d streams open after %v\n", o.agents, time.Since(start).Round(time.Millisecond))

	// The first release everywhere, each node taking the install time.
	var last int64
	_, _, err = srv.Deploy(ctx, app+"@"+rels[0].Version, "bench=rollout", o.agents, 5*time.Minute, func(e api.Event) (bool, error) {
		last = max(last, e.ID)
		return runs(e, rels[0].Version), nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s runs on every node\n", app, rels[0].Version)

	var gone []string
	for _, a := range agents {
		if a.offline {
			a.stop()
			gone = append(gone, a.Name)
		}
	}
	if len(gone) > 0 {
		if last, err = waitDown(ctx, srv.Admin, last, gone, o.grace+time.Minute); err != nil {
			return err
		}
		fmt.Printf("%d nodes that left are down\n", len(gone))
	}

	// The server's idle cost with these agents connected, to set the rollout's against.
	idle0, idleT := fleet.CPUTicks(srv.PID()), time.Now()
	time.Sleep(o.idle)
	idleRate := float64(fleet.CPUTicks(srv.PID())-idle0) / 100 / time.Since(idleT).Seconds()

	if so.Control != "" {
		if err := profctl.Start(so.Control, filepath.Join(o.profile, "cpu-rollout.pprof")); err != nil {
			return err
		}
	}
	load0 := loadavg()
	cpu0, self0, lost0 := fleet.CPUTicks(srv.PID()), selfCPU(), f.lost.Load()
	t0 := time.Now()
	ro, err := srv.Admin.StartRollout(ctx, api.RolloutStart{App: app, Version: rels[1].Version, PolicyYAML: o.policy()})
	if err != nil {
		return fmt.Errorf("start the rollout: %w", err)
	}
	res, err := follow(ctx, srv.Admin, ro, o.timeout)
	cpu1, self1 := fleet.CPUTicks(srv.PID()), selfCPU()
	load1 := loadavg()
	if so.Control != "" {
		if err := profctl.Stop(so.Control); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	final, err := srv.Admin.Rollout(ctx, ro.ID)
	if err != nil {
		return err
	}
	r := result{o: o, rollout: final, follow: res, t0: t0, idleRate: idleRate,
		cpu: float64(cpu1-cpu0) / 100, self: self1 - self0, load0: load0, load1: load1, lost: f.lost.Load() - lost0}
	r.lags(agents)
	r.print()
	return nil
}

// runs reports whether e says a node runs version.
func runs(e api.Event, version string) bool {
	if e.Type != api.EventAppState {
		return false
	}
	var c api.AppStateChanged
	return e.Decode(&c) == nil && c.App == app && c.To == api.AppStateRunning && c.Version == version
}

// waitDown follows the event log from since until every one of names is down, and returns the
// last event it read.
func waitDown(ctx context.Context, c *client.Client, since int64, names []string, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	left := map[string]bool{}
	for _, n := range names {
		left[n] = true
	}
	done := errors.New("done")
	err := c.FollowEvents(ctx, since, func(e api.Event) error {
		since = e.ID
		if e.Type == api.EventNodeDown {
			delete(left, e.Subject)
		}
		if len(left) == 0 {
			return done
		}
		return nil
	})
	if err != done {
		return since, fmt.Errorf("%d of %d nodes that left are not down: %v", len(left), len(names), err)
	}
	return since, nil
}

// push pushes app@version, signed with key: a manifest and a small file.
func push(ctx context.Context, srv *fleet.Server, dir, version string, key minisign.PrivateKey) (api.Release, error) {
	src, err := os.MkdirTemp(dir, "src-")
	if err != nil {
		return api.Release{}, err
	}
	defer os.RemoveAll(src)
	os.WriteFile(filepath.Join(src, release.ManifestName), []byte("app: "+app+"\nversion: "+version+"\nclass: minor\n"), 0o644)
	os.WriteFile(filepath.Join(src, "payload"), []byte("release "+version+"\n"), 0o644)
	return srv.Push(ctx, src, dir, key)
}

// loadavg is the machine's load average over the last minute.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// selfCPU is the harness's own CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func header(o options) string {
	return fmt.Sprintf("ferry rollout bench: %d agents over %d sites, %d waves, max_parallel %d, install %v, soak %v, %.0f%% offline (unreachable_deadline %v), %.0f%% failing; %d CPUs (%s), %s",
		o.agents, o.sites, o.waves, o.parallel, o.install, o.soak, o.offline*100, o.deadline, o.fail*100,
		runtime.NumCPU(), fleet.CPUModel(), runtime.Version())
}
