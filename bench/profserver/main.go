// Command profserver is `ferry server` (the same server package, defaults and listener) with a
// CPU profile a benchmark harness starts and stops over a loopback control port, so the profile
// covers exactly one measured phase of the server process and nothing of the load generator:
//
//	POST http://CONTROL/start?file=PATH   start a CPU profile into PATH
//	POST http://CONTROL/stop              stop it and close PATH
//	POST http://CONTROL/heap?file=PATH    write a heap profile (after a GC) into PATH
//
// Its flags are the few of `ferry server` the harnesses use. bench/blobs and bench/loadgen run
// it instead of ferry with -cpuprofile DIR.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/server"
)

func main() {
	var cfg server.Config
	flag.StringVar(&cfg.DataDir, "data", "", "directory for the database and admin.token")
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:7700", "address to serve the API on")
	flag.BoolVar(&cfg.InsecureHTTP, "insecure-http", false, "serve plain HTTP")
	flag.StringVar(&cfg.DB, "db", "", "database URL, as ferry server's --db")
	flag.StringVar(&cfg.ClusterKey, "cluster-key", "", "cluster key file, as ferry server's --cluster-key")
	flag.StringVar(&cfg.BlobsDir, "blobs", "", "blob directory, as ferry server's --blobs")
	flag.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "how often agents check in")
	flag.DurationVar(&cfg.HeartbeatGrace, "heartbeat-grace", 0, "silence after which a node is down (default 3 × interval)")
	rate := flag.String("public-rate", "20/s", "requests per second each source address may make to the public agent routes")
	flag.IntVar(&cfg.PublicBurst, "public-burst", 100, "burst above --public-rate each source address may make")
	flag.String("log-level", "warn", "ignored: warnings and errors are logged")
	control := flag.String("control", "127.0.0.1:7701", "loopback address of the profile control port")
	flag.Parse()
	r, err := strconv.ParseFloat(strings.TrimSuffix(*rate, "/s"), 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profserver: bad --public-rate:", err)
		os.Exit(2)
	}
	cfg.PublicRate = r
	server.TuneGC()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(cfg, *control); err != nil {
		fmt.Fprintln(os.Stderr, "profserver:", err)
		os.Exit(1)
	}
}

func run(cfg server.Config, control string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	cl, err := net.Listen("tcp", control)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var out *os.File
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if out != nil {
			http.Error(w, "a profile is running", http.StatusConflict)
			return
		}
		f, err := os.Create(r.URL.Query().Get("file"))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out = f
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if out == nil {
			http.Error(w, "no profile is running", http.StatusConflict)
			return
		}
		pprof.StopCPUProfile()
		if err := out.Close(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		out = nil
	})
	mux.HandleFunc("POST /heap", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Create(r.URL.Query().Get("file"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := writeMemoryClasses(r.URL.Query().Get("file") + ".memory"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	go http.Serve(cl, mux)
	return srv.Serve(ctx, l)
}

// writeMemoryClasses writes the runtime's account of the process's memory, one class per line
// (bytes), beside a heap profile: the profile shows heap objects only, not goroutine stacks or
// the collector's headroom.
func writeMemoryClasses(file string) error {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") || d.Name == "/gc/heap/goal:bytes" || d.Name == "/sched/goroutines:goroutines" {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	var b strings.Builder
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			fmt.Fprintf(&b, "%s %d\n", s.Name, s.Value.Uint64())
		}
	}
	return os.WriteFile(file, []byte(b.String()), 0o600)
}
