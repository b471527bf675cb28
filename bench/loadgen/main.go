// Command loadgen is Ferry's load harness for the agent protocol. It starts a real `ferry
// server` in another process, runs N virtual agents in this one that speak the real protocol
// over loopback (enroll, challenge, session, then a stream with -protocol 2, the default, or
// long-polled syncs with -protocol 1), and reports the server's CPU time per
// heartbeat, its resident memory per connected agent, and desired-state push latency (a label
// change on every node → every agent holds the new generation).
//
//	go run ./bench/loadgen -agents 1000
//	go run ./bench/loadgen -agents 10000
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
	"github.com/ferryhq/ferry/client"
)

func main() {
	agents := flag.Int("agents", 1000, "virtual agents")
	interval := flag.Duration("interval", 10*time.Second, "server heartbeat interval")
	window := flag.Duration("window", 30*time.Second, "steady-state window for CPU per heartbeat")
	pushes := flag.Int("pushes", 5, "label changes to time")
	bin := flag.String("ferry", "", "ferry binary (default: build ./cmd/ferry)")
	protocol := flag.Int("protocol", api.Protocol, "agent protocol: 2 streams, 1 long-polls")
	flag.Parse()
	if err := run(*agents, *interval, *window, *pushes, *protocol, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
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

func run(n int, interval, window time.Duration, pushes, protocol int, bin string) error {
	dir, err := os.MkdirTemp("", "ferry-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "ferry")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ferry").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v: %s", err, out)
		}
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := l.Addr().String()
	l.Close()
	srv := exec.Command(bin, "server", "--data", filepath.Join(dir, "data"), "--listen", listen,
		"--heartbeat-interval", interval.String(), "--log-level", "warn")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	pid := srv.Process.Pid
	addr := "http://" + listen

	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	admin, err := client.WaitForServer(wctx, addr, filepath.Join(dir, "data", "admin.token"))
	cancel()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := admin.AddSite(ctx, client.SiteAdd{Name: "bench", Tier: 2}); err != nil {
		return err
	}
	tok, err := admin.CreateToken(ctx, api.TokenCreate{Site: "bench", Uses: n})
	if err != nil {
		return err
	}
	rssBase := rss(pid)

	tr := &http.Transport{MaxIdleConnsPerHost: n + 100, MaxConnsPerHost: 0, IdleConnTimeout: time.Hour}
	ac, _ := client.New(addr, "")
	ac.HTTP = &http.Client{Transport: tr}
	ac.Protocol = protocol

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
		return fmt.Errorf("enroll: %w", err)
	}
	fmt.Printf("enrolled %d agents in %v\n", n, time.Since(start).Round(time.Millisecond))

	var syncs atomic.Int64    // heartbeats sent
	var answered atomic.Int64 // agents that have had a first answer
	var errs atomic.Int64
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
	for _, a := range agents {
		wg.Add(1)
		if protocol >= 2 {
			// One stream per agent: a heartbeat frame every interval, answers and pushes back.
			go func() {
				defer wg.Done()
				st, err := ac.OpenStream(runCtx, a.sess)
				if err != nil {
					errs.Add(1)
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
								errs.Add(1)
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
			continue
		}
		go func() {
			defer wg.Done()
			first := true
			for runCtx.Err() == nil {
				r, err := ac.Sync(runCtx, a.sess, api.Sync{Generation: a.gen.Load()})
				if err != nil {
					if runCtx.Err() == nil {
						errs.Add(1)
						time.Sleep(time.Second)
					}
					continue
				}
				syncs.Add(1)
				if first {
					answered.Add(1)
					first = false
				}
				record(a, r)
			}
		}()
	}
	// Let every agent connect and the first round of syncs settle.
	for answered.Load() < int64(n) {
		if errs.Load() > 0 {
			return fmt.Errorf("%d agents failed to connect", errs.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(interval + 2*time.Second)

	cpu0, s0, t0 := cpuTicks(pid), syncs.Load(), time.Now()
	time.Sleep(window)
	cpu1, s1, t1 := cpuTicks(pid), syncs.Load(), time.Now()
	beats := s1 - s0
	cpuSec := float64(cpu1-cpu0) / 100 // USER_HZ
	rssNow := rss(pid)

	// Push latency: label every node at once; time until each agent holds the new generation.
	var lats []time.Duration
	for p := 1; p <= pushes; p++ {
		target := int64(1 + p)
		t := time.Now()
		if _, err := admin.Label(ctx, "", api.LabelChange{Selector: "site=bench", Set: map[string]string{"push": strconv.Itoa(p)}}); err != nil {
			return err
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
				return fmt.Errorf("push %d: %d agents never got generation %d", p, missing, target)
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
	slices.Sort(lats)

	fmt.Printf("\n== ferry loadgen: %d agents (protocol %d), heartbeat interval %v, %d CPUs (%s), %s\n", n, protocol, interval, runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Printf("heartbeats in %v window: %d (%.0f/s), server CPU %.2fs → %.1f µs per heartbeat (target ≤ 25)\n",
		t1.Sub(t0).Round(time.Second), beats, float64(beats)/t1.Sub(t0).Seconds(), cpuSec, cpuSec*1e6/float64(beats))
	fmt.Printf("server RSS: %.1f MiB before agents, %.1f MiB with %d connected → %.1f KiB per agent (target ≤ 16)\n",
		float64(rssBase)/(1<<20), float64(rssNow)/(1<<20), n, float64(rssNow-rssBase)/1024/float64(n))
	fmt.Printf("push latency over %d pushes: p50 %v p99 %v (target p99 ≤ 1s)\n", pushes, pct(lats, 50), pct(lats, 99))
	fmt.Printf("agent errors: %d\n", errs.Load())
	return nil
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
