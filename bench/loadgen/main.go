// Command loadgen is Ferry's load harness for the agent protocol. It starts real `ferry server`
// processes, runs N virtual agents in this one that speak the real protocol over loopback
// (enroll, challenge, session, then one stream per agent), and reports the servers' CPU time per
// heartbeat, their resident memory per connected agent, and desired-state push latency (a label
// change on every node → every agent holds the new generation).
//
// With -transport both (the default) it runs each scenario twice in one invocation, one after
// the other: against servers started with --insecure-http, then against servers serving TLS
// with the CA they made for themselves (the agents trust its ca.pem), and prints them side by
// side.
//
// With -db postgres the servers run over PostgreSQL (--db): a throw-away cluster the harness
// starts (durable: fsync and synchronous commits on, as SQLite's synchronous=FULL), or the server
// $FERRY_BENCH_POSTGRES names, with a fresh database per scenario. -replicas 2 then runs two
// replicas over that database, sharing the cluster key and the blob directory; the agents are
// split evenly over them (each with its replica's address first), label changes go through
// replica 1, and CPU and memory are summed over the replicas' processes. The PostgreSQL
// server's own CPU (its processes' time in /proc) is reported beside the servers' when the
// harness started the cluster. -db both runs SQLite and PostgreSQL in one invocation, for
// ratios from the same run.
//
//	go run ./bench/loadgen -agents 1000
//	go run ./bench/loadgen -agents 10000 -transport both
//	go run ./bench/loadgen -agents 10000 -db both -replicas 1,2
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/internal/pgtest"
)

// envPostgres names a PostgreSQL server to run the postgres scenarios on instead of a cluster of
// the harness's own: a URL or key=value connection string whose user may create databases.
const envPostgres = "FERRY_BENCH_POSTGRES"

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 1000, "virtual agents")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "server heartbeat interval")
	flag.DurationVar(&o.window, "window", 30*time.Second, "steady-state window for CPU per heartbeat")
	flag.IntVar(&o.pushes, "pushes", 5, "label changes to time")
	flag.StringVar(&o.bin, "ferry", "", "ferry binary (default: build ./cmd/ferry)")
	transport := flag.String("transport", "both", "plain (--insecure-http), tls, or both one after the other")
	db := flag.String("db", "sqlite", "sqlite, postgres (a throw-away cluster, or $"+envPostgres+"), or both one after the other")
	replicas := flag.String("replicas", "1", "server replicas over the one PostgreSQL database: N, or a list such as 1,2 (SQLite runs one)")
	flag.StringVar(&o.profile, "cpuprofile", "", "directory for a CPU profile of the server (the first replica) over the window and a heap profile after it, per scenario (runs bench/profserver)")
	flag.Parse()
	setups, err := plan(*db, *replicas, *transport)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := run(o, setups); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// options are the harness's flags that every scenario shares.
type options struct {
	agents           int
	interval, window time.Duration
	pushes           int
	bin, profile     string
}

// setup is one scenario: a backend, a number of server replicas over it, and a transport.
type setup struct {
	db       string // sqlite or postgres
	replicas int
	mode     string // plain or tls
}

func (s setup) String() string { return fmt.Sprintf("%s×%d %s", s.db, s.replicas, s.mode) }

// file names the scenario in its profiles' file names: sqlite-1-plain.
func (s setup) file() string { return fmt.Sprintf("%s-%d-%s", s.db, s.replicas, s.mode) }

// plan returns the scenarios of the -db, -replicas and -transport flags, in the order they run.
func plan(db, replicas, transport string) ([]setup, error) {
	modes, err := profctl.Modes(transport)
	if err != nil {
		return nil, err
	}
	var dbs []string
	switch db {
	case "sqlite", "postgres":
		dbs = []string{db}
	case "both":
		dbs = []string{"sqlite", "postgres"}
	default:
		return nil, errors.New("-db must be sqlite, postgres or both")
	}
	var counts []int
	for _, f := range strings.Split(replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-replicas %q: want a count of at least 1, or a list such as 1,2", replicas)
		}
		counts = append(counts, n)
	}
	var setups []setup
	for _, d := range dbs {
		for _, n := range counts {
			if d == "sqlite" && n != 1 {
				continue // one server owns a SQLite database
			}
			for _, m := range modes {
				setups = append(setups, setup{d, n, m})
			}
		}
	}
	if len(setups) == 0 {
		return nil, errors.New("SQLite serves one replica: add 1 to -replicas, or use -db postgres")
	}
	return setups, nil
}

// result is one scenario's measurements.
type result struct {
	setup
	err          error
	enroll       time.Duration
	beats        int64
	window       time.Duration
	cpuSec       float64 // the servers' CPU over the window, summed over the replicas
	pgSec        float64 // the PostgreSQL server's CPU over the window; < 0 when not measured
	rssBase, rss int64   // summed over the replicas
	connected    []int   // agent streams each replica held, by its own gauge
	p50, p99     time.Duration
	errs         int64
	n            int
}

func (r result) usPerBeat() float64   { return r.cpuSec * 1e6 / float64(r.beats) }
func (r result) pgUsPerBeat() float64 { return r.pgSec * 1e6 / float64(r.beats) }
func (r result) kibPerAgent() float64 { return float64(r.rss-r.rssBase) / 1024 / float64(r.n) }

func run(o options, setups []setup) error {
	dir, err := os.MkdirTemp("", "ferry-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := profctl.Build(dir, o.bin, o.profile)
	if err != nil {
		return err
	}
	var pg *pgtest.Cluster
	if slices.ContainsFunc(setups, func(s setup) bool { return s.db == "postgres" }) {
		// Durable, as the SQLite store is (synchronous=FULL): pgtest's defaults turn it off.
		pg, err = pgtest.Start(pgtest.Options{URL: os.Getenv(envPostgres),
			Settings: []string{"fsync=on", "synchronous_commit=on", "full_page_writes=on"}})
		if err != nil {
			return fmt.Errorf("%w (or set %s to a server's URL)", err, envPostgres)
		}
		defer func() {
			if err := pg.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen:", err)
			}
		}()
	}
	var results []result
	for i, s := range setups {
		fmt.Printf("\n### %s\n", s)
		r, err := scenario(filepath.Join(dir, strconv.Itoa(i)), bin, s, o, pg)
		if err != nil {
			// One scenario's failure is reported in its row; the others still run.
			fmt.Fprintf(os.Stderr, "loadgen: %s: %v\n", s, err)
			r = result{setup: s, err: err}
		}
		results = append(results, r)
	}
	report(o, results)
	return nil
}

func report(o options, results []result) {
	fmt.Printf("\n== ferry loadgen: %d agents (protocol %d), heartbeat interval %v, %v window, %d pushes, %d CPUs (%s), %s\n",
		o.agents, api.Protocol, o.interval, o.window, o.pushes, runtime.NumCPU(), fleet.CPUModel(), runtime.Version())
	fmt.Printf("| db | replicas | transport | heartbeats/s | server CPU per heartbeat | PostgreSQL CPU per heartbeat | server RSS per agent | push p50 | push p99 | agents per replica | agent errors |\n")
	fmt.Printf("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, r := range results {
		if r.err != nil {
			fmt.Printf("| %s | %d | %s | failed: %v | | | | | | | |\n", r.db, r.replicas, r.mode, r.err)
			continue
		}
		pgCPU := "—"
		if r.pgSec >= 0 {
			pgCPU = fmt.Sprintf("%.1f µs", r.pgUsPerBeat())
		}
		split := make([]string, len(r.connected))
		for i, c := range r.connected {
			split[i] = strconv.Itoa(c)
		}
		fmt.Printf("| %s | %d | %s | %.0f | %.1f µs | %s | %.1f KiB | %v | %v | %s | %d |\n", r.db, r.replicas, r.mode,
			float64(r.beats)/r.window.Seconds(), r.usPerBeat(), pgCPU, r.kibPerAgent(), r.p50, r.p99,
			strings.Join(split, " / "), r.errs)
	}
	fmt.Printf("| target | | | | ≤ 25 µs | | ≤ 16 KiB | | ≤ 1 s at 10,000 | | |\n")
	find := func(db string, replicas int, mode string) (result, bool) {
		for _, r := range results {
			if r.db == db && r.replicas == replicas && r.mode == mode && r.err == nil {
				return r, true
			}
		}
		return result{}, false
	}
	for _, r := range results {
		if r.err != nil {
			continue
		}
		if r.mode == "tls" {
			if p, ok := find(r.db, r.replicas, "plain"); ok {
				fmt.Printf("%s×%d tls/plain: CPU per heartbeat %.2f×, RSS per agent %.2f×, push p99 %.2f×\n", r.db, r.replicas,
					r.usPerBeat()/p.usPerBeat(), r.kibPerAgent()/p.kibPerAgent(), r.p99.Seconds()/p.p99.Seconds())
			}
		}
		if r.db == "postgres" {
			if q, ok := find("sqlite", 1, r.mode); ok {
				both := ""
				if r.pgSec >= 0 {
					both = fmt.Sprintf(" (with PostgreSQL's own %.2f×)", (r.usPerBeat()+r.pgUsPerBeat())/q.usPerBeat())
				}
				fmt.Printf("postgres×%d/sqlite %s: server CPU per heartbeat %.2f×%s, RSS per agent %.2f×, push p99 %.2f×\n",
					r.replicas, r.mode, r.usPerBeat()/q.usPerBeat(), both, r.kibPerAgent()/q.kibPerAgent(), r.p99.Seconds()/q.p99.Seconds())
			}
		}
	}
}
