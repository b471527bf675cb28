// Command wan measures how long a release takes to reach agents behind slow links that break.
// It starts a real `ferry server` (built from ./cmd/ferry) on loopback and N `ferry agent`
// processes in temporary directories, each reaching the server through a toxiproxy proxy of its
// own, in this process: latency with jitter on both directions of every connection, a bandwidth
// limit per connection and direction, and, in the "cut" scenario, a share of the connections
// (drawn anew before each cut run, among those open then and those opened later) closed a while
// after the first bytes they carry toward the agent. It pushes an incompressible release, deploys it to every agent
// and times the deploy until the server has heard from every agent that it installed it,
// then reports that time against the link's ideal:
//
//	ideal = blob size / bandwidth + 6 × latency
//
// with the bandwidth in toxiproxy's KB/s, whose KB is 1000 bytes (an 8 MiB release at 1,250 KB/s
// and 200 ms: 6.71 s + 1.2 s = 7.91 s).
//
// The six one-way trips are the least any install takes: the desired state down the agent's
// stream (1), the trusted keys (a request and its answer, 2), the blob (its request and the
// first byte of the answer, 2; then size / bandwidth), and the report up the stream (1). New
// connections' TLS handshakes and the server's and agent's own work come on top.
//
// The scenarios alternate (clean, cut, clean, cut, ...) so that drift on the machine touches
// both alike.
//
//	go run ./bench/wan
//	go run ./bench/wan -runs 10 -scenarios cut
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/release"
)

// options are the harness's flags.
type options struct {
	agents    int
	runs      int
	size      int64 // payload bytes
	latency   time.Duration
	jitter    time.Duration
	rateKB    int64 // toxiproxy's KB: 1000 bytes
	cut       float64
	cutAfter  time.Duration
	scenarios []string
	plain     bool
	settle    time.Duration
	timeout   time.Duration
	bin       string
	logs      string
}

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 10, "agents, each behind a proxy of its own")
	flag.IntVar(&o.runs, "runs", 5, "deploys per scenario")
	mib := flag.Int("mib", 8, "release payload in MiB (random bytes: it does not compress)")
	flag.DurationVar(&o.latency, "latency", 200*time.Millisecond, "latency added to each direction of every connection")
	flag.DurationVar(&o.jitter, "jitter", 50*time.Millisecond, "jitter of the latency (±)")
	flag.Int64Var(&o.rateKB, "rate", 1250, "bandwidth per connection and direction, in toxiproxy's KB/s (1 KB = 1000 bytes)")
	flag.Float64Var(&o.cut, "cut", 0.3, "share of connections the cut scenario closes")
	flag.DurationVar(&o.cutAfter, "cut-after", 2*time.Second, "how long after the first bytes it carries toward the agent a connection picked for the cut is closed")
	scenarios := flag.String("scenarios", "clean,cut", "clean (no cuts), cut, or both, comma-separated; they alternate run by run")
	transport := flag.String("transport", "tls", "tls (the server's own CA, as agents enrolled with its pin) or plain (--insecure-http)")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "wait after changing the links before each deploy, so connections churn as they will")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up on a deploy after this long")
	flag.StringVar(&o.bin, "ferry", "", "ferry binary (default: build ./cmd/ferry)")
	flag.StringVar(&o.logs, "logs", "", "keep the agents' and the server's logs in this directory")
	flag.Parse()
	o.size = int64(*mib) << 20
	for _, s := range strings.Split(*scenarios, ",") {
		s = strings.TrimSpace(s)
		if s != "clean" && s != "cut" {
			fmt.Fprintf(os.Stderr, "wan: unknown scenario %q: want clean or cut\n", s)
			os.Exit(2)
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch *transport {
	case "tls":
	case "plain":
		o.plain = true
	default:
		fmt.Fprintln(os.Stderr, "wan: -transport must be tls or plain")
		os.Exit(2)
	}
	if o.agents < 1 || o.runs < 1 || o.cut < 0 || o.cut > 1 {
		fmt.Fprintln(os.Stderr, "wan: want -agents and -runs ≥ 1 and -cut within [0, 1]")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "wan:", err)
		os.Exit(1)
	}
}

// result is one deploy.
type result struct {
	scenario string
	run      int
	took     time.Duration
	ideal    time.Duration
	slowest  string       // the last agent to report the release installed
	counts   fleet.Counts // requests the server answered from the links' change to the deploy's end
	err      error
}

func (r result) ratio() float64 { return r.took.Seconds() / r.ideal.Seconds() }

func run(o options) error {
	ws, err := fleet.NewWorkspace("ferry-bench-wan-", o.logs, o.bin)
	if err != nil {
		return err
	}
	defer ws.Close()
	dir, logs, bin := ws.Dir, ws.Logs, ws.Bin
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	srv, err := fleet.StartServer(bin, filepath.Join(dir, "server"), logs, o.plain)
	if err != nil {
		return err
	}
	defer srv.Stop()
	tok, key, err := srv.Enrollment(ctx, "wan", o.agents, filepath.Join(dir, "keys"))
	if err != nil {
		return err
	}

	links, err := newLinks(o, srv.Listen)
	if err != nil {
		return err
	}
	defer links.stop()
	var agents []*fleet.Agent
	defer func() { fleet.StopAgents(agents) }()
	scheme := "https://"
	if o.plain {
		scheme = "http://"
	}
	for i := range o.agents {
		name := fmt.Sprintf("wan%02d", i)
		a, err := fleet.StartAgent(bin, scheme+links.addr(i), tok.Secret, filepath.Join(dir, name), name, logs, "")
		if err != nil {
			return err
		}
		agents = append(agents, a)
	}
	if err := srv.WaitUp(ctx, "wan", o.agents); err != nil {
		return fmt.Errorf("%w (logs in %s)", err, logs)
	}

	fmt.Printf("== ferry WAN benchmark: %d agents, each through its own link: latency %v ± %v each way, %d KB/s per connection and direction; cut scenario: %.0f%% of connections closed %v after their first bytes toward the agent\n",
		o.agents, o.latency, o.jitter, o.rateKB, o.cut*100, o.cutAfter)
	fmt.Printf("   %d CPUs (%s), %s, %s; ideal = blob size / (%d × 1000 B/s) + 6 × %v\n", runtime.NumCPU(), fleet.CPUModel(), runtime.Version(),
		map[bool]string{true: "plain HTTP", false: "TLS"}[o.plain], o.rateKB, o.latency)

	var results []result
	version := 0
	for r := 1; r <= o.runs; r++ {
		for _, sc := range o.scenarios {
			before, err := srv.Counts()
			if err != nil {
				return err
			}
			if err := links.setCut(sc == "cut"); err != nil {
				return err
			}
			time.Sleep(o.settle)
			version++
			res := deploy(ctx, o, srv, key, dir, fmt.Sprintf("1.0.%d", version))
			if res.err == nil {
				after, err := srv.Counts()
				if err != nil {
					return err
				}
				res.counts = after.Minus(before)
			}
			res.scenario, res.run = sc, r
			results = append(results, res)
			if res.err != nil {
				fmt.Printf("%s run %d: failed: %v (logs in %s)\n", sc, r, res.err, logs)
				continue
			}
			fmt.Printf("%s run %d: %v, ideal %v → %.2f× (last: %s; server answered %s)\n", sc, r,
				res.took.Round(time.Millisecond), res.ideal.Round(time.Millisecond), res.ratio(), res.slowest, res.counts)
		}
	}
	report(o, results)
	return nil
}

// deploy pushes a new release of the given version and deploys it to every agent, and times
// the deploy until the last agent's report that it installed it.
func deploy(ctx context.Context, o options, srv *fleet.Server, key minisign.PrivateKey, dir, version string) result {
	var res result
	rel, err := push(ctx, srv, key, dir, version, o.size)
	if err != nil {
		res.err = fmt.Errorf("push: %w", err)
		return res
	}
	res.ideal = ideal(rel.Size, o)
	start, installed, err := srv.Deploy(ctx, "big@"+version, "site=wan", o.agents, o.timeout, func(e api.Event) (bool, error) {
		var p api.AppInstalled
		return e.Type == api.EventAppInstalled && e.Decode(&p) == nil && p.App == "big" && p.Version == version, nil
	})
	if err != nil {
		res.err = err
		return res
	}
	for node, at := range installed {
		if d := at.Sub(start); d > res.took {
			res.took, res.slowest = d, node
		}
	}
	return res
}

// ideal is the least time a deploy of a blob of size bytes can take over the links: the blob at
// the link's bandwidth, and six one-way trips (see the package comment).
func ideal(size int64, o options) time.Duration {
	transfer := time.Duration(float64(size) / float64(o.rateKB*1000) * float64(time.Second))
	return transfer + 6*o.latency
}

// push pushes big@version, signed with key, holding size random bytes.
func push(ctx context.Context, srv *fleet.Server, key minisign.PrivateKey, dir, version string, size int64) (api.Release, error) {
	src, err := os.MkdirTemp(dir, "src-")
	if err != nil {
		return api.Release{}, err
	}
	defer os.RemoveAll(src)
	os.WriteFile(filepath.Join(src, release.ManifestName), []byte("app: big\nversion: "+version+"\nclass: minor\n"), 0o644)
	pf, err := os.Create(filepath.Join(src, "payload"))
	if err != nil {
		return api.Release{}, err
	}
	_, err = io.CopyN(pf, rand.Reader, size)
	pf.Close()
	if err != nil {
		return api.Release{}, err
	}
	return srv.Push(ctx, src, dir, key)
}

func report(o options, results []result) {
	fmt.Printf("\nSessions, streams and blob requests: what the server answered from the change of the links (before the settling wait) to the deploy's end.\n")
	fmt.Printf("\n| scenario | run | time | ideal | ratio | last agent | sessions | streams | blob requests (whole / ranged) |\n")
	fmt.Printf("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n")
	for _, r := range results {
		if r.err != nil {
			fmt.Printf("| %s | %d | failed: %v | | | | | | |\n", r.scenario, r.run, r.err)
			continue
		}
		fmt.Printf("| %s | %d | %.2f s | %.2f s | %.2f× | %s | %d | %d | %d / %d |\n", r.scenario, r.run, r.took.Seconds(),
			r.ideal.Seconds(), r.ratio(), r.slowest, r.counts.Sessions, r.counts.Streams, r.counts.Blobs, r.counts.Ranged)
	}
	fmt.Println()
	for _, sc := range o.scenarios {
		var ratios []float64
		var times []time.Duration
		failed := 0
		for _, r := range results {
			if r.scenario != sc {
				continue
			}
			if r.err != nil {
				failed++
				continue
			}
			ratios = append(ratios, r.ratio())
			times = append(times, r.took)
		}
		if len(ratios) == 0 {
			fmt.Printf("%s: every run failed\n", sc)
			continue
		}
		slices.Sort(ratios)
		slices.Sort(times)
		fmt.Printf("%s: %d runs, median %.2f s (%.2f×), worst %.2f s (%.2f×)", sc, len(ratios),
			median(times).Seconds(), medianF(ratios), times[len(times)-1].Seconds(), ratios[len(ratios)-1])
		if failed > 0 {
			fmt.Printf(", %d failed", failed)
		}
		if sc == "cut" {
			fmt.Printf(" (target: worst ≤ 1.5×)")
		}
		fmt.Println()
	}
}

func median(d []time.Duration) time.Duration {
	n := len(d)
	if n%2 == 1 {
		return d[n/2]
	}
	return (d[n/2-1] + d[n/2]) / 2
}

func medianF(f []float64) float64 {
	n := len(f)
	if n%2 == 1 {
		return f[n/2]
	}
	return (f[n/2-1] + f[n/2]) / 2
}
