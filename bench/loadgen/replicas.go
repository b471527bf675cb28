package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
)

// replica is one `ferry server` process of a scenario.
type replica struct {
	cmd     *exec.Cmd
	addr    string // base URL: http://… or https://…
	data    string
	control string // profile control port, when profiling
}

func (r *replica) pid() int       { return r.cmd.Process.Pid }
func (r *replica) caFile() string { return filepath.Join(r.data, "tls", "ca.pem") }

// startReplicas starts s.replicas servers in dir, one after the other: over PostgreSQL (dbURL)
// they share the database, the cluster key and the blob directory, as the README's replicas do,
// and every replica after the first gets the first one's admin.token in its own data directory
// before it starts. It returns the replicas and an admin client of the first; stop kills them.
func startReplicas(dir, bin string, s setup, dbURL string, interval time.Duration, profile string) (rs []*replica, admin *client.Client, stop func(), err error) {
	stop = func() {
		for _, r := range rs {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	for i := range s.replicas {
		listen := fleet.FreePort()
		r := &replica{data: filepath.Join(dir, fmt.Sprintf("data%d", i+1)), addr: "https://" + listen}
		// n agents enroll from one address (127.0.0.1), so the per-address limit of the public
		// agent routes (default 20/s, burst 100) is raised out of the way: it would pace the
		// enrollment phase, which is not what this harness measures.
		args := []string{"--data", r.data, "--listen", listen,
			"--heartbeat-interval", interval.String(), "--log-level", "warn",
			"--public-rate", "100000/s", "--public-burst", "100000"}
		if dbURL != "" {
			args = append(args, "--db", dbURL, "--cluster-key", filepath.Join(dir, "cluster.key"),
				"--blobs", filepath.Join(dir, "blobs"))
		}
		if profile != "" {
			r.control = fleet.FreePort()
			args = append(args, "--control", r.control)
		} else {
			args = append([]string{"server"}, args...)
		}
		if s.mode == "plain" {
			args = append(args, "--insecure-http")
			r.addr = "http://" + listen
		}
		if i > 0 {
			// Only the first replica writes the cluster's admin token; the operator copies it.
			tok, err := os.ReadFile(filepath.Join(rs[0].data, "admin.token"))
			if err != nil {
				return rs, nil, stop, err
			}
			if err := os.MkdirAll(r.data, 0o700); err != nil {
				return rs, nil, stop, err
			}
			if err := os.WriteFile(filepath.Join(r.data, "admin.token"), tok, 0o600); err != nil {
				return rs, nil, stop, err
			}
		}
		r.cmd = exec.Command(bin, args...)
		r.cmd.Stderr = &prefixWriter{prefix: fmt.Sprintf("[replica %d] ", i+1), w: os.Stderr}
		if err := r.cmd.Start(); err != nil {
			return rs, nil, stop, err
		}
		rs = append(rs, r)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := client.WaitForServer(ctx, r.addr, filepath.Join(r.data, "admin.token"), pki.ClientOptions{CAFile: r.caFile()})
		cancel()
		if err != nil {
			return rs, nil, stop, fmt.Errorf("replica %d: %w", i+1, err)
		}
		if i == 0 {
			admin = c
		}
	}
	return rs, admin, stop, nil
}

// agentConnections reads the replica's ferry_agent_connections gauge: the agent streams it
// holds, by its own count.
func agentConnections(hc *http.Client, addr string) (int, error) {
	resp, err := hc.Get(addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "ferry_agent_connections "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int(v), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s/metrics has no ferry_agent_connections", addr)
}

// prefixWriter starts each line written to w with prefix, so the replicas' logs can be told
// apart on the one stderr.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	mid    bool // the last write ended inside a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !p.mid {
			out.WriteString(p.prefix)
		}
		out.Write(line)
		p.mid = line[len(line)-1] != '\n'
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
