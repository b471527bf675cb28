// Command loadgen is Ferry's load harness for the agent protocol. It starts a real `ferry
// server` in another process, runs N virtual agents in this one that speak the real protocol
// over loopback (enroll, challenge, session, then one stream per agent), and reports the
// server's CPU time per heartbeat, its resident memory per connected agent, and desired-state
// push latency (a label change on every node → every agent holds the new generation).
//
// With -transport both (the default) it runs the same scenario twice in one invocation, one
// after the other: against a server started with --insecure-http, then against one serving TLS
// with the CA it made for itself (the agents trust its ca.pem), and prints the two side by side.
//
//	go run ./bench/loadgen -agents 1000
//	go run ./bench/loadgen -agents 10000 -transport both
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
)

func main() {
	agents := flag.Int("agents", 1000, "virtual agents")
	interval := flag.Duration("interval", 10*time.Second, "server heartbeat interval")
	window := flag.Duration("window", 30*time.Second, "steady-state window for CPU per heartbeat")
	pushes := flag.Int("pushes", 5, "label changes to time")
	bin := flag.String("ferry", "", "ferry binary (default: build ./cmd/ferry)")
	transport := flag.String("transport", "both", "plain (--insecure-http), tls, or both one after the other")
	profile := flag.String("cpuprofile", "", "directory for a CPU profile of the server over the window and a heap profile after it, per transport (runs bench/profserver)")
	flag.Parse()
	modes, err := profctl.Modes(*transport)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := run(*agents, *interval, *window, *pushes, *bin, modes, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// result is one scenario's measurements.
type result struct {
	mode         string
	enroll       time.Duration
	beats        int64
	window       time.Duration
	cpuSec       float64
	rssBase, rss int64
	p50, p99     time.Duration
	errs         int64
}

func (r result) usPerBeat() float64        { return r.cpuSec * 1e6 / float64(r.beats) }
func (r result) kibPerAgent(n int) float64 { return float64(r.rss-r.rssBase) / 1024 / float64(n) }

func run(n int, interval, window time.Duration, pushes int, bin string, modes []string, profile string) error {
	dir, err := os.MkdirTemp("", "ferry-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin, err = profctl.Build(dir, bin, profile); err != nil {
		return err
	}
	var results []result
	for _, mode := range modes {
		fmt.Printf("\n### %s\n", mode)
		r, err := scenario(filepath.Join(dir, mode), bin, mode, n, interval, window, pushes, profile)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		results = append(results, r)
	}
	fmt.Printf("\n== ferry loadgen: %d agents (protocol %d), heartbeat interval %v, %v window, %d pushes, %d CPUs (%s), %s\n",
		n, api.Protocol, interval, window, pushes, runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Printf("| transport | heartbeats/s | server CPU per heartbeat | server RSS per agent | push p50 | push p99 | agent errors |\n")
	fmt.Printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %.1f µs | %.1f KiB | %v | %v | %d |\n", r.mode, float64(r.beats)/r.window.Seconds(),
			r.usPerBeat(), r.kibPerAgent(n), r.p50, r.p99, r.errs)
	}
	fmt.Printf("| target | | ≤ 25 µs | ≤ 16 KiB | | ≤ 1 s at 10,000 | |\n")
	if len(results) == 2 {
		p, t := results[0], results[1]
		fmt.Printf("tls/plain: CPU per heartbeat %.2f×, RSS per agent %.2f×, push p99 %.2f×\n",
			t.usPerBeat()/p.usPerBeat(), t.kibPerAgent(n)/p.kibPerAgent(n), t.p99.Seconds()/p.p99.Seconds())
	}
	return nil
}

type vagent struct {
	name string
	key  ed25519.PrivateKey
	sess string
	gen  atomic.Int64
	// got[i] is when the agent first held generation ≥ target i.
	mu  sync.Mutex
	got map[int64]time.Time
}

// scenario starts a server in dir, plain (--insecure-http) or TLS, runs n agents against it,
// measures, and stops the server.
func scenario(dir, bin, mode string, n int, interval, window time.Duration, pushes int, profile string) (result, error) {
	res := result{mode: mode}
	listen := freePort()
	data := filepath.Join(dir, "data")
	// n agents enroll from one address (127.0.0.1), so the per-address limit of the public agent
	// routes (default 20/s, burst 100) is raised out of the way: it would pace the enrollment
	// phase, which is not what this harness measures.
	args := []string{"--data", data, "--listen", listen,
		"--heartbeat-interval", interval.String(), "--log-level", "warn",
		"--public-rate", "100000/s", "--public-burst", "100000"}
	var control string
	if profile != "" {
		control = freePort()
		args = append(args, "--control", control)
	} else {
		args = append([]string{"server"}, args...)
	}
	addr := "https://" + listen
	if mode == "plain" {
		args = append(args, "--insecure-http")
		addr = "http://" + listen
	}
	srv := exec.Command(bin, args...)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return res, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	pid := srv.Process.Pid
	caFile := filepath.Join(data, "tls", "ca.pem")

	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	admin, err := client.WaitForServer(wctx, addr, filepath.Join(data, "admin.token"), pki.ClientOptions{CAFile: caFile})
	cancel()
	if err != nil {
		return res, err
	}
	ctx := context.Background()
	if _, err := admin.AddSite(ctx, client.SiteAdd{Name: "bench", Tier: 2}); err != nil {
		return res, err
	}
	tok, err := admin.CreateToken(ctx, api.TokenCreate{Site: "bench", Uses: n})
	if err != nil {
		return res, err
	}
	res.rssBase = rss(pid)

	// One transport for both modes (HTTP/1.1: streams upgrade their connection); over TLS the
	// agents trust the server's own CA, as an agent enrolled with the CA pin does.
	var tlsCfg *tls.Config
	if mode == "tls" {
		if tlsCfg, err = pki.ClientConfig(pki.ClientOptions{CAFile: caFile}); err != nil {
			return res, err
		}
	}
	tr := client.Transport(tlsCfg)
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.IdleConnTimeout = 0, n+100, time.Hour
	ac, _ := client.New(addr, "")
	ac.HTTP = &http.Client{Transport: tr}

	agents := make([]*vagent, n)
	start := time.Now()
	if err := parallel(n, 32, func(i int) error {
		a := &vagent{name: fmt.Sprintf("v%05d", i), got: map[int64]time.Time{}}
		_, a.key, _ = ed25519.GenerateKey(rand.Reader)
		pk := base64.StdEncoding.EncodeToString(a.key.Public().(ed25519.PublicKey))
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(a.key, api.EnrollMessage(tok.Secret, a.name, pk)))
		if _, err := ac.Enroll(ctx, api.Enroll{Token: tok.Secret, Name: a.name, PublicKey: pk, Signature: sig}); err != nil {
			return err
		}
		ch, err := ac.Challenge(ctx, a.name)
		if err != nil {
			return err
		}
		s, err := ac.Session(ctx, api.SessionRequest{Node: a.name, Nonce: ch.Nonce,
			Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(a.key, api.SessionMessage(a.name, ch.Nonce)))})
		a.sess = s.Token
		agents[i] = a
		return err
	}); err != nil {
		return res, fmt.Errorf("enroll: %w", err)
	}
	res.enroll = time.Since(start)
	fmt.Printf("enrolled %d agents in %v\n", n, res.enroll.Round(time.Millisecond))

	var syncs atomic.Int64    // heartbeats sent
	var answered atomic.Int64 // agents that have had a first answer
	var errs atomic.Int64
	var firstErr sync.Once
	failed := func(err error) {
		errs.Add(1)
		firstErr.Do(func() { fmt.Fprintf(os.Stderr, "%s: first agent error: %v\n", mode, err) })
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
	for _, a := range agents {
		wg.Add(1)
		// One stream per agent: a heartbeat frame every interval, answers and pushes back.
		go func() {
			defer wg.Done()
			opening <- struct{}{}
			st, err := ac.OpenStream(runCtx, a.sess)
			<-opening
			if err != nil {
				failed(err)
				return
			}
			stop := context.AfterFunc(runCtx, func() { st.Close() })
			defer stop()
			go func() {
				first := true
				for {
					r, err := st.Recv()
					if err != nil {
						if runCtx.Err() == nil {
							failed(err)
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
				if err := st.Send(api.Sync{Generation: a.gen.Load()}); err != nil {
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

	if control != "" {
		if err := profctl.Start(control, filepath.Join(profile, "cpu-"+mode+".pprof")); err != nil {
			return res, err
		}
	}
	cpu0, s0, t0 := cpuTicks(pid), syncs.Load(), time.Now()
	time.Sleep(window)
	cpu1, s1, t1 := cpuTicks(pid), syncs.Load(), time.Now()
	beats := s1 - s0
	cpuSec := float64(cpu1-cpu0) / 100 // USER_HZ
	rssNow := rss(pid)
	if control != "" {
		if err := profctl.Stop(control); err != nil {
			return res, err
		}
		if err := profctl.Heap(control, filepath.Join(profile, "heap-"+mode+".pprof")); err != nil {
			return res, err
		}
	}

	// Push latency: label every node at once; time until each agent holds the new generation.
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
		for _, a := range agents {
			a.mu.Lock()
			round = append(round, a.got[target].Sub(t))
			a.mu.Unlock()
		}
		slices.Sort(round)
		fmt.Printf("push %d: API answered in %v; agents p50 %v p99 %v max %v\n", p, ack.Round(time.Millisecond),
			pct(round, 50), pct(round, 99), round[len(round)-1].Round(time.Millisecond))
		lats = append(lats, round...)
		time.Sleep(time.Second)
	}
	stop()
	wg.Wait()
	slices.Sort(lats)

	res.beats, res.window, res.cpuSec, res.rss = beats, t1.Sub(t0), cpuSec, rssNow
	res.p50, res.p99, res.errs = pct(lats, 50), pct(lats, 99), errs.Load()
	fmt.Printf("%s: heartbeats in %v window: %d (%.0f/s), server CPU %.2fs → %.1f µs per heartbeat (target ≤ 25)\n", mode,
		res.window.Round(time.Second), beats, float64(beats)/res.window.Seconds(), cpuSec, res.usPerBeat())
	fmt.Printf("%s: server RSS: %.1f MiB before agents, %.1f MiB with %d connected → %.1f KiB per agent (target ≤ 16)\n", mode,
		float64(res.rssBase)/(1<<20), float64(rssNow)/(1<<20), n, res.kibPerAgent(n))
	fmt.Printf("%s: push latency over %d pushes: p50 %v p99 %v (target p99 ≤ 1s)\n", mode, pushes, res.p50, res.p99)
	fmt.Printf("%s: agent errors: %d\n", mode, res.errs)
	return res, nil
}

func freePort() string {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().String()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)].Round(time.Millisecond)
}

func parallel(n, width int, fn func(int) error) error {
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	next := atomic.Int64{}
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// cpuTicks is the process's user+system time in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func rss(pid int) int64 {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		}
	}
	return "unknown CPU"
}
