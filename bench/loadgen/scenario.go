package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/pgtest"
	"github.com/ferryhq/ferry/pki"
)

type vagent struct {
	name string
	sess string
	gen  atomic.Int64
	// got[i] is when the agent first held generation ≥ target i.
	mu  sync.Mutex
	got map[int64]time.Time
}

// scenario starts s.replicas servers in dir over s.db (a fresh database of pg for postgres),
// plain (--insecure-http) or TLS, runs o.agents agents split evenly over them, measures, and
// stops the servers.
func scenario(dir, bin string, s setup, o options, pg *pgtest.Cluster) (result, error) {
	n, interval, window, pushes, profile := o.agents, o.interval, o.window, o.pushes, o.profile
	res := result{setup: s, n: n, pgSec: -1}
	var dbURL string
	if s.db == "postgres" {
		url, drop, err := pg.NewDB()
		if err != nil {
			return res, err
		}
		defer func() {
			if err := drop(); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen:", err)
			}
		}()
		dbURL = url
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, err
	}
	reps, admin, stopServers, err := startReplicas(dir, bin, s, dbURL, interval, profile)
	if err != nil {
		return res, err
	}
	defer stopServers()
	pids := make([]int, len(reps))
	for i, r := range reps {
		pids[i] = r.pid()
	}
	pgPID := 0
	if pg != nil && s.db == "postgres" {
		pgPID = pg.PID()
	}
	ctx := context.Background()
	if _, err := admin.AddSite(ctx, client.SiteAdd{Name: "bench", Tier: 2}); err != nil {
		return res, err
	}
	tok, err := admin.CreateToken(ctx, api.TokenCreate{Site: "bench", Uses: n})
	if err != nil {
		return res, err
	}
	res.rssBase = fleet.RSSSum(pids)

	// One client per replica, for the agents that replica serves: its address first, then the
	// others', as an agent is given them. One transport for both modes (HTTP/1.1: streams
	// upgrade their connection); over TLS the agents trust the cluster's CA, as an agent
	// enrolled with the CA pin does.
	acs := make([]*client.Client, len(reps))
	for i, r := range reps {
		var tlsCfg *tls.Config
		if s.mode == "tls" {
			if tlsCfg, err = pki.ClientConfig(pki.ClientOptions{CAFile: r.caFile()}); err != nil {
				return res, err
			}
		}
		tr := client.Transport(tlsCfg)
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.IdleConnTimeout = 0, n+100, time.Hour
		addrs := []string{r.addr}
		for j, other := range reps {
			if j != i {
				addrs = append(addrs, other.addr)
			}
		}
		if acs[i], err = client.New(strings.Join(addrs, ","), ""); err != nil {
			return res, err
		}
		acs[i].HTTP = &http.Client{Transport: tr}
	}
	home := func(i int) *client.Client { return acs[i%len(acs)] }

	agents := make([]*vagent, n)
	start := time.Now()
	if err := fleet.Parallel(n, 32, func(i int) error {
		id, err := fleet.EnrollVirtual(ctx, home(i), tok.Secret, fmt.Sprintf("v%05d", i), nil)
		agents[i] = &vagent{name: id.Name, sess: id.Session, got: map[int64]time.Time{}}
		return err
	}); err != nil {
		return res, fmt.Errorf("enroll: %w", err)
	}
	res.enroll = time.Since(start)
	fmt.Printf("enrolled %d agents in %v\n", n, res.enroll.Round(time.Millisecond))

	var syncs atomic.Int64    // heartbeats sent
	var answered atomic.Int64 // agents that have had a first answer
	var errs atomic.Int64
	var connected atomic.Int64 // streams open
	// failed counts an agent's error and prints the first few, with the agent, its replica, what
	// it was doing and how many streams were open then.
	failed := func(i int, what string, err error) {
		if errs.Add(1) <= 5 {
			fmt.Fprintf(os.Stderr, "%s: agent %d (replica %d) %s: %v (%d streams open, %d answered)\n", s, i,
				i%len(reps)+1, what, err, connected.Load(), answered.Load())
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	record := func(a *vagent, r api.SyncReply) {
		if r.Desired != nil {
			now := time.Now()
			a.mu.Lock()
			a.got[r.Desired.Generation] = now
			a.mu.Unlock()
			a.gen.Store(r.Desired.Generation)
		}
	}
	// At most 256 streams are being opened at once, so 10,000 TLS handshakes queue here rather
	// than run into the client's 10 s handshake timeout on two shared cores; the measurements
	// start once every agent has had its first answer.
	opening := make(chan struct{}, 256)
	for i, a := range agents {
		ac := home(i)
		wg.Add(1)
		// One stream per agent: a heartbeat frame every interval, answers and pushes back.
		go func() {
			defer wg.Done()
			opening <- struct{}{}
			st, err := ac.OpenStream(runCtx, a.sess)
			<-opening
			if err != nil {
				failed(i, "opening its stream", err)
				return
			}
			connected.Add(1)
			stop := context.AfterFunc(runCtx, func() { st.Close() })
			defer stop()
			go func() {
				first := true
				for {
					r, err := st.Recv()
					if err != nil {
						if runCtx.Err() == nil {
							what := "reading its stream"
							if first {
								what = "reading its first answer"
							}
							failed(i, what, err)
						}
						return
					}
					if first {
						answered.Add(1)
						first = false
					}
					record(a, r)
				}
			}()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				if err := st.Send(api.Sync{Generation: a.gen.Load(), Sparse: true}); err != nil {
					return
				}
				syncs.Add(1)
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	// Let every agent connect and the first round of syncs settle.
	for answered.Load() < int64(n) {
		if errs.Load() > 0 {
			return res, fmt.Errorf("%d agents failed to connect", errs.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(interval + 2*time.Second)

	control := reps[0].control
	if control != "" {
		if err := profctl.Start(control, filepath.Join(profile, "cpu-"+s.file()+".pprof")); err != nil {
			return res, err
		}
	}
	pg0 := fleet.TreeTicks(pgPID)
	cpu0, s0, t0 := fleet.CPUTicksSum(pids), syncs.Load(), time.Now()
	time.Sleep(window)
	cpu1, s1, t1 := fleet.CPUTicksSum(pids), syncs.Load(), time.Now()
	pg1 := fleet.TreeTicks(pgPID)
	beats := s1 - s0
	cpuSec := float64(cpu1-cpu0) / 100 // USER_HZ
	if pgPID != 0 {
		res.pgSec = float64(pg1-pg0) / 100
	}
	rssNow := fleet.RSSSum(pids)
	for i, r := range reps {
		c, err := agentConnections(acs[i].HTTP, r.addr)
		if err != nil {
			return res, err
		}
		res.connected = append(res.connected, c)
	}
	if control != "" {
		if err := profctl.Stop(control); err != nil {
			return res, err
		}
		if err := profctl.Heap(control, filepath.Join(profile, "heap-"+s.file()+".pprof")); err != nil {
			return res, err
		}
	}

	// Push latency: label every node at once through replica 1; time until each agent, on
	// whichever replica, holds the new generation.
	var lats []time.Duration
	for p := 1; p <= pushes; p++ {
		target := int64(1 + p)
		t := time.Now()
		if _, err := admin.Label(ctx, "", api.LabelChange{Selector: "site=bench", Set: map[string]string{"push": strconv.Itoa(p)}}); err != nil {
			return res, err
		}
		ack := time.Since(t)
		deadline := time.Now().Add(60 * time.Second)
		for {
			missing := 0
			for _, a := range agents {
				if a.gen.Load() < target {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				return res, fmt.Errorf("push %d: %d agents never got generation %d", p, missing, target)
			}
			time.Sleep(5 * time.Millisecond)
		}
		var round []time.Duration
		perReplica := make([][]time.Duration, len(reps))
		for i, a := range agents {
			a.mu.Lock()
			d := a.got[target].Sub(t)
			a.mu.Unlock()
			round = append(round, d)
			perReplica[i%len(reps)] = append(perReplica[i%len(reps)], d)
		}
		slices.Sort(round)
		fmt.Printf("push %d: API answered in %v; agents p50 %v p99 %v max %v", p, ack.Round(time.Millisecond),
			fleet.Percentile(round, 50), fleet.Percentile(round, 99), round[len(round)-1].Round(time.Millisecond))
		if len(reps) > 1 {
			for i, d := range perReplica {
				slices.Sort(d)
				fmt.Printf("; replica %d p99 %v", i+1, fleet.Percentile(d, 99))
			}
		}
		fmt.Println()
		lats = append(lats, round...)
		time.Sleep(time.Second)
	}
	stop()
	wg.Wait()
	slices.Sort(lats)

	res.beats, res.window, res.cpuSec, res.rss = beats, t1.Sub(t0), cpuSec, rssNow
	res.p50, res.p99, res.errs = fleet.Percentile(lats, 50), fleet.Percentile(lats, 99), errs.Load()
	fmt.Printf("%s: heartbeats in %v window: %d (%.0f/s), server CPU %.2fs → %.1f µs per heartbeat (target ≤ 25)\n", s,
		res.window.Round(time.Second), beats, float64(beats)/res.window.Seconds(), cpuSec, res.usPerBeat())
	if res.pgSec >= 0 {
		fmt.Printf("%s: PostgreSQL CPU %.2fs → %.1f µs per heartbeat\n", s, res.pgSec, res.pgUsPerBeat())
	}
	fmt.Printf("%s: server RSS: %.1f MiB before agents, %.1f MiB with %d connected → %.1f KiB per agent (target ≤ 16)\n", s,
		float64(res.rssBase)/(1<<20), float64(rssNow)/(1<<20), n, res.kibPerAgent())
	fmt.Printf("%s: agents per replica, by the replicas' ferry_agent_connections: %v\n", s, res.connected)
	fmt.Printf("%s: push latency over %d pushes: p50 %v p99 %v (target p99 ≤ 1s)\n", s, pushes, res.p50, res.p99)
	fmt.Printf("%s: agent errors: %d\n", s, res.errs)
	return res, nil
}
