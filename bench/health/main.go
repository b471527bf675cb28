// Command health is Ferry's benchmark harness for issue 11's two targets: the server's CPU per
// check result ingested, with N virtual agents each reporting K operator checks every interval,
// and the web overview's render time and size over a fleet of that shape.
//
// It builds `ferry` from ./cmd/ferry (or takes -ferry), starts `ferry server` on loopback (plain
// HTTP), adds S sites spread over the globe and enrolls N virtual agents over them, each holding
// one stream as `ferry agent` does (a sparse heartbeat every -interval). It adds K operator
// checks matching every node and waits until every agent holds them, then measures the server's
// CPU (from /proc) over two windows of the same length: one with the agents only heartbeating,
// and one with each agent also reporting a result of each check every -check-interval — the
// results ride on the first of the agent's heartbeats after the oldest has waited 30 s, and the
// share -change of them that changes state is sent at once in a frame of its own, as
// `ferry agent` does. CPU per result is the difference
// between the windows over the results sent.
//
// The overview: it signs in to the web UI with the admin token and fetches `/` -fetches times,
// reporting the median and worst time and the page's bytes.
//
//	go run ./bench/health -agents 10000 -sites 500 -checks 5 -check-interval 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/client"
)

type options struct {
	agents, sites, checks int
	interval, every       time.Duration
	window                time.Duration
	change                float64
	fetches               int
	bin, logs, profile    string
}

func main() {
	var o options
	flag.IntVar(&o.agents, "agents", 10000, "virtual agents")
	flag.IntVar(&o.sites, "sites", 500, "sites the agents are spread over")
	flag.IntVar(&o.checks, "checks", 5, "operator checks every node runs")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "heartbeat interval")
	flag.DurationVar(&o.every, "check-interval", 30*time.Second, "how often each check reports a result")
	flag.DurationVar(&o.window, "window", 60*time.Second, "length of each measured window")
	flag.Float64Var(&o.change, "change", 0.001, "share of results that change the check's state (sent at once)")
	flag.IntVar(&o.fetches, "fetches", 20, "fetches of the overview page")
	flag.StringVar(&o.bin, "ferry", "", "ferry binary (default: build ./cmd/ferry)")
	flag.StringVar(&o.profile, "cpuprofile", "", "directory for a CPU profile of the server over the reporting window (runs bench/profserver)")
	flag.StringVar(&o.logs, "logs", "", "directory for the server's log (default: in the scratch directory)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	fmt.Printf("ferry health bench: %d agents over %d sites, %d checks each every %v, heartbeat %v, %.1f%% of results change state; %d CPUs (%s), %s\n",
		o.agents, o.sites, o.checks, o.every, o.interval, o.change*100, runtime.NumCPU(), fleet.CPUModel(), runtime.Version())
	ws, err := fleet.NewWorkspace("ferry-healthbench-", o.logs, o.bin)
	if err != nil {
		return err
	}
	defer ws.Close()
	so := fleet.ServerOptions{Plain: true, Args: []string{
		"--heartbeat-interval", o.interval.String(), "--heartbeat-grace", "10m", "--log-level", "warn",
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

	rng := rand.New(rand.NewPCG(11, 11))
	perSite := make([]int, o.sites)
	for i := range o.agents {
		perSite[i%o.sites]++
	}
	tokens := make([]string, o.sites)
	for s := range o.sites {
		lat, lon := rng.Float64()*120-55, rng.Float64()*360-180
		name := fmt.Sprintf("site-%03d", s)
		if _, err := srv.Admin.AddSite(ctx, client.SiteAdd{Name: name, Tier: 2, Lat: &lat, Lon: &lon}); err != nil {
			return err
		}
		tok, err := srv.Admin.CreateToken(ctx, api.TokenCreate{Site: name, Uses: perSite[s]})
		if err != nil {
			return err
		}
		tokens[s] = tok.Secret
	}
	names := make([]string, o.checks)
	for k := range names {
		names[k] = fmt.Sprintf("bench-%d", k)
		if err := addCheck(ctx, srv.Admin, names[k], o.every); err != nil {
			return fmt.Errorf("add check %s: %w", names[k], err)
		}
	}

	f := &fleetRun{interval: o.interval, every: o.every, checks: names, change: o.change, held: make(chan struct{}, o.agents)}
	agents := make([]*vagent, o.agents)
	start := time.Now()
	if err := fleet.Parallel(o.agents, 32, func(i int) error {
		id, err := fleet.EnrollVirtual(ctx, srv.Admin, tokens[i%o.sites], fmt.Sprintf("n%05d", i), map[string]string{"bench": "health"})
		agents[i] = &vagent{Identity: id, seed: uint64(i)}
		return err
	}); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	opening := make(chan struct{}, 256)
	if err := fleet.Parallel(o.agents, 512, func(i int) error { return agents[i].connect(ctx, srv.Admin, f, opening) }); err != nil {
		return fmt.Errorf("open streams: %w", err)
	}
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	fmt.Printf("%d agents enrolled with their streams open in %v\n", o.agents, time.Since(start).Round(time.Millisecond))
	for range o.agents {
		select {
		case <-f.held:
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("agents did not all get their %d checks within 2 minutes", o.checks)
		}
	}
	fmt.Printf("every agent holds its %d checks after %v\n", o.checks, time.Since(start).Round(time.Millisecond))

	idle := window(srv.PID(), o.window)
	if so.Control != "" {
		if err := profctl.Start(so.Control, filepath.Join(o.profile, "cpu-checks.pprof")); err != nil {
			return err
		}
	}
	f.reporting.Store(true)
	sent0 := f.results.Load()
	busy := window(srv.PID(), o.window)
	f.reporting.Store(false)
	if so.Control != "" {
		if err := profctl.Stop(so.Control); err != nil {
			return err
		}
	}
	results := f.results.Load() - sent0
	perResult := time.Duration(float64(busy-idle) / float64(max(results, 1)))
	fmt.Printf("server CPU: %v idle, %v reporting over %v windows; %d results (%.0f/s, %d at once for a state change), %d frames refused or broken\n",
		idle, busy, o.window, results, float64(results)/o.window.Seconds(), f.changes.Load(), f.lost.Load())
	fmt.Printf("server CPU per result beyond idle: %v\n", perResult.Round(10*time.Nanosecond))
	return overview(ctx, srv, filepath.Join(ws.Dir, "server", "admin.token"), o.fetches)
}

// window is the server's CPU time over d.
func window(pid int, d time.Duration) time.Duration {
	t0 := fleet.CPUTicks(pid)
	time.Sleep(d)
	return time.Duration(fleet.CPUTicks(pid)-t0) * 10 * time.Millisecond
}

// overview signs in to the web UI with the admin token and fetches the overview n times.
func overview(ctx context.Context, srv *fleet.Server, tokenFile string, n int) error {
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: time.Minute}
	if err := signIn(ctx, hc, srv.Base, strings.TrimSpace(string(tok))); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	var times []time.Duration
	var size int
	for range n {
		t0 := time.Now()
		resp, err := hc.Get(srv.Base + "/")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /: %s", resp.Status)
		}
		times = append(times, time.Since(t0))
		size = len(b)
	}
	slices.Sort(times)
	fmt.Printf("overview page: %d fetches, median %v, worst %v, %d bytes (%.1f KiB)\n",
		n, fleet.Percentile(times, 50), times[len(times)-1].Round(time.Millisecond), size, float64(size)/1024)
	return nil
}

// fleetRun is what every virtual agent shares.
type fleetRun struct {
	interval, every time.Duration
	checks          []string
	change          float64
	held            chan struct{} // one send per agent once it holds its checks
	reporting       atomic.Bool   // the agents report results
	results         atomic.Int64  // results sent
	changes         atomic.Int64  // of them, sent at once for a state change
	lost            atomic.Int64  // streams that broke
}

// vagent is a virtual agent: it holds one stream, heartbeats, and once it holds its checks
// reports a result of each every check interval, staggered over the interval.
type vagent struct {
	fleet.Identity
	seed uint64
	stop context.CancelFunc

	mu    sync.Mutex
	gen   int64
	held  bool
	state map[string]string // the state each check last reported
	due   map[string]time.Time
}

func (a *vagent) connect(ctx context.Context, c *client.Client, f *fleetRun, opening chan struct{}) error {
	ctx, a.stop = context.WithCancel(ctx)
	opening <- struct{}{}
	st, err := c.OpenStream(ctx, a.Session)
	<-opening
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { st.Close() })
	a.state, a.due = map[string]string{}, map[string]time.Time{}
	rng := rand.New(rand.NewPCG(a.seed, 7))
	if err := st.Send(api.Sync{Generation: 0, Apps: &[]api.NodeApp{}}); err != nil {
		return err
	}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				if ctx.Err() == nil {
					f.lost.Add(1)
				}
				return
			}
			if r.Desired == nil {
				continue
			}
			a.mu.Lock()
			a.gen = r.Desired.Generation
			if !a.held && len(r.Desired.Checks) == len(f.checks) {
				a.held = true
				now := time.Now()
				for _, c := range f.checks {
					a.state[c] = api.CheckOK
					a.due[c] = now.Add(time.Duration(rng.Int64N(int64(f.every))))
				}
				f.held <- struct{}{}
			}
			a.mu.Unlock()
		}
	}()
	// Heartbeats, offset at random within the interval so the fleet's are spread; results
	// that fall due between them ride on the next, and a state change goes at once.
	go func() {
		step := time.NewTicker(f.interval / 10)
		defer step.Stop()
		var queue []api.CheckResult
		nextBeat := time.Now().Add(time.Duration(rng.Int64N(int64(f.interval))))
		for {
			var now time.Time
			select {
			case <-ctx.Done():
				return
			case now = <-step.C:
			}
			a.mu.Lock()
			for _, c := range f.checks {
				if !a.held || now.Before(a.due[c]) {
					continue
				}
				for !now.Before(a.due[c]) {
					a.due[c] = a.due[c].Add(f.every)
				}
				if !f.reporting.Load() {
					continue // not measured yet: the check's turn passes without a result
				}
				r := api.CheckResult{Check: c, State: a.state[c], Hard: true, Attempt: 1, Time: now,
					Duration: api.Duration(3 * time.Millisecond), Output: "BENCH OK - load average: 0.12, 0.10, 0.08",
					Perf: []api.CheckPerf{{Label: "load1", Value: rng.Float64()}, {Label: "load5", Value: rng.Float64()}}}
				if rng.Float64() < f.change {
					r.State = api.CheckWarning
					if a.state[c] != api.CheckOK {
						r.State = api.CheckOK
					}
					a.state[c] = r.State
					if err := st.Send(api.Sync{Generation: a.gen, Checks: []api.CheckResult{r}}); err == nil {
						f.results.Add(1)
						f.changes.Add(1)
					}
					continue
				}
				queue = append(queue, r)
			}
			gen := a.gen
			a.mu.Unlock()
			if now.Before(nextBeat) {
				continue
			}
			nextBeat = now.Add(f.interval)
			// As `ferry agent`: routine results ride on a heartbeat once the oldest has waited
			// 30 s (or 64 wait).
			if len(queue) == 0 || len(queue) < api.MaxCheckResults/4 && now.Sub(queue[0].Time) < 30*time.Second {
				st.Send(api.Sync{Generation: gen, Sparse: true})
				continue
			}
			if st.Send(api.Sync{Generation: gen, Checks: queue}) == nil {
				f.results.Add(int64(len(queue)))
			}
			queue = queue[:0]
		}
	}()
	return nil
}

// signIn posts the token to the web UI's sign-in form.
func signIn(ctx context.Context, hc *http.Client, base, token string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/signin", strings.NewReader(url.Values{"token": {token}, "next": {"/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("POST /signin: %s", resp.Status)
	}
	return nil
}

// addCheck adds an operator check named name on every node, run every interval. The virtual
// agents run nothing: they report results for it as `ferry agent` would.
func addCheck(ctx context.Context, c *client.Client, name string, every time.Duration) error {
	_, err := c.AddCheck(ctx, api.CheckSpec{Name: name, Selector: "bench=health", Exec: []string{"/usr/lib/nagios/plugins/check_load", "-w", "5,4,3", "-c", "10,8,6"},
		Interval: api.Duration(every)})
	return err
}
