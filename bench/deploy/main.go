// Command deploy measures a deploy of a small new release to a fleet of agents on loopback: the
// time from the deploy call until every node runs the new release and has verified it, and the
// share of that time which is the verify wait.
//
// It builds `ferry` from ./cmd/ferry, starts `ferry server` on loopback and N `ferry agent`
// processes, each with a data directory of its own. The app is Ferry's example, examples/hello,
// which this very binary runs (`ferry example-hello`, as `ferry dev` does): each release is a
// manifest and a two-line bin/hello that execs it, an HTTP service on a port the agent assigns,
// checked on /healthz, with min_healthy_time from the flags. A first deploy, 1.0.0, is not
// measured; each run then pushes and deploys the next version to every node and times it:
//
//   - all running: from the deploy call to the server's app.state event of the last node's report
//     that it runs the release (verified), followed on the server's change feed;
//   - the verify wait, per node: from the new process's start (from /proc on the node, in its
//     report) to the agent's commit of the release (its log says when); the share is the last
//     node's verify wait over all running;
//   - the report lag, per node: from the agent's commit to the server's event of it.
//
// One clock serves all of these: the machine's. The deploy's start is the harness's time just
// before the call.
//
//	go run ./bench/deploy
//	go run ./bench/deploy -agents 100 -runs 5 -min-healthy 2s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/client"
)

// options are the harness's flags.
type options struct {
	agents     int
	runs       int
	minHealthy time.Duration
	interval   time.Duration
	timeout    time.Duration
	bin        string
	logs       string
}

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 100, "agents, each a `ferry agent` process with its own data directory")
	flag.IntVar(&o.runs, "runs", 3, "measured deploys, each of a new version, after the first install")
	flag.DurationVar(&o.minHealthy, "min-healthy", 2*time.Second, "the release's update.min_healthy_time")
	flag.DurationVar(&o.interval, "check-interval", time.Second, "the interval of the release's /healthz check")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up on a deploy after this long")
	flag.StringVar(&o.bin, "ferry", "", "ferry binary (default: build ./cmd/ferry)")
	flag.StringVar(&o.logs, "logs", "", "keep the agents' and the server's logs in this directory")
	flag.Parse()
	if o.agents < 1 || o.runs < 1 {
		fmt.Fprintln(os.Stderr, "deploy: want -agents and -runs ≥ 1")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		os.Exit(1)
	}
}

const site = "bench"

func run(o options) error {
	ws, err := fleet.NewWorkspace("ferry-bench-deploy-", o.logs, o.bin)
	if err != nil {
		return err
	}
	defer ws.Close()
	dir, logs, bin := ws.Dir, ws.Logs, ws.Bin
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	srv, err := fleet.StartServer(bin, filepath.Join(dir, "server"), logs, false)
	if err != nil {
		return err
	}
	defer srv.Stop()
	tok, key, err := srv.Enrollment(ctx, site, o.agents, filepath.Join(dir, "keys"))
	if err != nil {
		return err
	}
	var agents []*fleet.Agent
	defer func() {
		fleet.StopAgents(agents)
		for _, a := range agents {
			killServices(a.Data)
		}
	}()
	for i := range o.agents {
		name := fmt.Sprintf("node%03d", i)
		a, err := fleet.StartAgent(bin, srv.Base, tok.Secret, filepath.Join(dir, name), name, logs, fmt.Sprintf("wave=%d", i/firstWave))
		if err != nil {
			return err
		}
		agents = append(agents, a)
	}
	if err := srv.WaitUp(ctx, site, o.agents); err != nil {
		return fmt.Errorf("%w (logs in %s)", err, logs)
	}

	fmt.Printf("== ferry deploy benchmark: %d agents on loopback (TLS), examples/hello with min_healthy_time %v and a /healthz check every %v\n",
		o.agents, o.minHealthy, o.interval)
	fmt.Printf("   %d CPUs (%s), %s\n", runtime.NumCPU(), fleet.CPUModel(), runtime.Version())
	if err := push(ctx, o, srv, key, bin, dir, "1.0.0"); err != nil {
		return err
	}
	for w := 0; w*firstWave < o.agents; w++ {
		n := min(firstWave, o.agents-w*firstWave)
		if _, _, err := roll(ctx, o, srv, fmt.Sprintf("site=%s,wave=%d", site, w), n, "1.0.0"); err != nil {
			return fmt.Errorf("first install, wave %d: %w (logs in %s)", w, err, logs)
		}
	}
	fmt.Printf("first install (1.0.0, %d nodes at a time, not measured): done\n", firstWave)
	var results []result
	for r := 1; r <= o.runs; r++ {
		res, err := deploy(ctx, o, srv, agents, key, bin, dir, fmt.Sprintf("1.0.%d", r))
		if err != nil {
			return fmt.Errorf("run %d: %w (logs in %s)", r, err, logs)
		}
		fmt.Printf("run %d (1.0.%d): %s\n", r, r, res)
		results = append(results, res)
	}
	report(o, results)
	return nil
}

// result is one deploy: the server's times of each node's reports, and each node's own times
// (one clock: the same machine's).
type result struct {
	took       time.Duration   // from the deploy call to the server's news of the last node running the release
	agentsTook time.Duration   // from the deploy call to the last agent's commit of the release
	last       string          // the last node the server heard of
	lastVerify time.Duration   // its verify wait
	verify     []time.Duration // per node, the verify wait: from the new process's start to the agent's commit
	lag        []time.Duration // per node, from the agent's commit to the server's news of it running
}

func (r result) String() string {
	p50v, maxv := pct(r.verify)
	p50l, maxl := pct(r.lag)
	return fmt.Sprintf("all running in %.2f s as the server heard (on the agents: %.2f s); last: %s, its verify wait %.2f s = %.0f%%; per node (p50 / max): verify wait %.2f / %.2f s, report lag %.2f / %.2f s",
		r.took.Seconds(), r.agentsTook.Seconds(), r.last, r.lastVerify.Seconds(), r.share()*100, p50v.Seconds(), maxv.Seconds(), p50l.Seconds(), maxl.Seconds())
}

// share is the part of the deploy's time that is the verify wait on its critical path: the
// last node's.
func (r result) share() float64 { return r.lastVerify.Seconds() / r.took.Seconds() }

// firstWave is how many nodes install the first release at a time. Each node's agent gives the
// app's port a number the kernel picks as free (and keeps it for later releases); agents that
// do so at the same moment on one machine may be handed the same one, and the second service
// cannot listen. Nodes of one machine are a harness's doing, not a fleet's, so the harness
// keeps that moment small.
const firstWave = 10

// push pushes hello@version.
func push(ctx context.Context, o options, srv *fleet.Server, key minisign.PrivateKey, bin, dir, version string) error {
	src := filepath.Join(dir, "src-"+version)
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte(manifest(version, o)), 0o644)
	os.WriteFile(filepath.Join(src, "bin", "hello"), []byte(fmt.Sprintf("#!/bin/sh\nexec %q example-hello\n", bin)), 0o755)
	if _, err := srv.Push(ctx, src, dir, key); err != nil {
		return fmt.Errorf("push hello %s: %w", version, err)
	}
	return nil
}

// roll deploys hello@version to the n nodes selector picks and follows the change feed until
// each reports it running, verified: when it started, and the server's time of each report.
func roll(ctx context.Context, o options, srv *fleet.Server, selector string, n int, version string) (time.Time, map[string]time.Time, error) {
	return srv.Deploy(ctx, "hello@"+version, selector, n, o.timeout, func(e api.Event) (bool, error) {
		var c api.AppStateChanged
		if e.Type != api.EventAppState || e.Decode(&c) != nil || c.App != "hello" || c.Version != version {
			return false, nil
		}
		if c.To == api.AppStateFailed || c.To == api.AppStateRolledBack {
			tail := ""
			if n, err := srv.Admin.Node(ctx, e.Subject); err == nil {
				for _, na := range n.Apps {
					if na.App == "hello" {
						tail = na.LogTail
					}
				}
			}
			return false, fmt.Errorf("node %s: %s %s: %s; its log ends:\n%s", e.Subject, version, c.To, c.Reason, tail)
		}
		return c.To == api.AppStateRunning, nil
	})
}

// deploy pushes hello@version, deploys it to every node and measures the deploy.
func deploy(ctx context.Context, o options, srv *fleet.Server, agents []*fleet.Agent, key minisign.PrivateKey, bin, dir, version string) (result, error) {
	var res result
	if err := push(ctx, o, srv, key, bin, dir, version); err != nil {
		return res, err
	}
	start, running, err := roll(ctx, o, srv, "site="+site, o.agents, version)
	if err != nil {
		return res, err
	}
	// The verify wait begins as the new process starts (its start time, from /proc on the node,
	// is in the node's report) and ends as the agent commits the release (its log says when).
	nodes, err := srv.Admin.Nodes(ctx, client.NodeQuery{Site: site})
	if err != nil {
		return res, err
	}
	started := map[string]time.Time{}
	for _, n := range nodes {
		for _, na := range n.Apps {
			if na.App == "hello" && na.Version == version && len(na.Processes) == 1 && na.Processes[0].Started != nil {
				started[n.Name] = *na.Processes[0].Started
			}
		}
	}
	for _, ag := range agents {
		node := ag.Name
		s, ok := started[node]
		if !ok {
			log, _ := os.ReadFile(filepath.Join(ag.Data, "apps", "hello", "logs", "web.log"))
			return res, fmt.Errorf("node %s reports %s running without its process's start; its web.log:\n%s", node, version, log)
		}
		c, err := committed(ag.Log, version)
		if err != nil {
			return res, fmt.Errorf("node %s: %w", node, err)
		}
		at := running[node]
		res.verify = append(res.verify, c.Sub(s))
		res.lag = append(res.lag, at.Sub(c))
		if d := at.Sub(start); d > res.took {
			res.took, res.last, res.lastVerify = d, node, c.Sub(s)
		}
		res.agentsTook = max(res.agentsTook, c.Sub(start))
	}
	return res, nil
}

// committed reads from an agent's log when it committed hello@version: its verify's end.
func committed(log, version string) (time.Time, error) {
	b, err := os.ReadFile(log)
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `msg="release verified and committed"`) && strings.Contains(line+" ", " app=hello version="+version+" ") {
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			return time.Parse(time.RFC3339Nano, ts)
		}
	}
	return time.Time{}, fmt.Errorf("no commit of hello %s in %s", version, log)
}

// manifest is hello@version's ferry.yaml: the example app with its health check.
func manifest(version string, o options) string {
	return fmt.Sprintf(`app: hello
version: %s
class: minor
ports: [{name: http}]
processes:
  - name: web
    command: [bin/hello]
checks:
  - {name: healthz, http: "http://127.0.0.1:${FERRY_PORT_HTTP}/healthz", interval: %s, timeout: 2s}
update: {min_healthy_time: %s, healthy_deadline: 1m}
`, version, o.interval, o.minHealthy)
}

func report(o options, results []result) {
	fmt.Printf("\n| run | all running (server) | all committed (agents) | last node's verify wait | share | verify wait p50 / max | report lag p50 / max |\n")
	fmt.Printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var took []time.Duration
	var shares []float64
	for i, r := range results {
		p50v, maxv := pct(r.verify)
		p50l, maxl := pct(r.lag)
		fmt.Printf("| %d | %.2f s | %.2f s | %.2f s | %.0f%% | %.2f s / %.2f s | %.2f s / %.2f s |\n", i+1, r.took.Seconds(), r.agentsTook.Seconds(),
			r.lastVerify.Seconds(), r.share()*100, p50v.Seconds(), maxv.Seconds(), p50l.Seconds(), maxl.Seconds())
		took = append(took, r.took)
		shares = append(shares, r.share())
	}
	slices.Sort(took)
	slices.Sort(shares)
	fmt.Printf("\n%d agents, %d runs: all running in %.2f s (median), worst %.2f s; the verify wait is %.0f%% of it (median; min_healthy_time %v)\n",
		o.agents, len(results), took[len(took)/2].Seconds(), took[len(took)-1].Seconds(), shares[len(shares)/2]*100, o.minHealthy)
}

// pct is the median and the largest of d.
func pct(d []time.Duration) (p50, max time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

// killServices kills the services an agent on data left running (an agent's services outlive
// it, as they must across its upgrades): the process groups its supervisors' state files name.
func killServices(data string) {
	files, _ := filepath.Glob(filepath.Join(data, "apps", "*", "supervise", "state.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st struct {
			Processes map[string]struct {
				Pid int `json:"pid"`
			} `json:"processes"`
		}
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		for _, p := range st.Processes {
			if p.Pid > 0 {
				syscall.Kill(-p.Pid, syscall.SIGKILL)
			}
		}
	}
}
