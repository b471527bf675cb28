// Package fleet runs Ferry on loopback for the benchmark harnesses: a `ferry server` process and
// `ferry agent` processes over directories of the harness's, each logging into a file of its
// own, the server's request counts from its metrics, and the machine's description.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
)

// Workspace is a harness's scratch directory, the directory its processes log into, and the
// ferry binary it runs.
type Workspace struct{ Dir, Logs, Bin string }

// NewWorkspace makes a scratch directory named after prefix, a log directory (logs, else one in
// the scratch directory), and builds ./cmd/ferry there unless bin names a binary.
func NewWorkspace(prefix, logs, bin string) (*Workspace, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	w := &Workspace{Dir: dir, Logs: logs}
	if w.Logs == "" {
		w.Logs = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(w.Logs, 0o755); err != nil {
		w.Close()
		return nil, err
	}
	if bin, err = profctl.Build(dir, bin, ""); err == nil {
		w.Bin, err = filepath.Abs(bin)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close removes the scratch directory.
func (w *Workspace) Close() { os.RemoveAll(w.Dir) }

// Server is a `ferry server` process.
type Server struct {
	cmd    *exec.Cmd
	Listen string // host:port
	Base   string // its URL
	Admin  *client.Client
	HTTP   *http.Client
}

// PID is the server process's.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop ends the server and waits for it.
func (s *Server) Stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// StartServer starts `ferry server` (bin) on a free loopback port over data, logging into
// logs/server.log, and waits until it answers its admin.
func StartServer(bin, data, logs string, plain bool) (*Server, error) {
	return StartServerWith(bin, data, logs, ServerOptions{Plain: plain})
}

// ServerOptions are what a harness asks of its server beyond StartServer's.
type ServerOptions struct {
	Plain bool // --insecure-http
	// Control is bench/profserver's profile control address: bin is then bench/profserver,
	// which takes the server's flags without the subcommand.
	Control string
	Args    []string // more flags
}

// StartServerWith starts the server as StartServer does, with o.
func StartServerWith(bin, data, logs string, o ServerOptions) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	listen := l.Addr().String()
	l.Close()
	args := []string{"server", "--data", data, "--listen", listen, "--log-level", "info"}
	if o.Control != "" {
		args = append(args[1:], "--control", o.Control)
	}
	s := &Server{Listen: listen, Base: "https://" + listen}
	if o.Plain {
		args = append(args, "--insecure-http")
		s.Base = "http://" + listen
	}
	args = append(args, o.Args...)
	logf, err := os.Create(filepath.Join(logs, "server.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.cmd.Wait(); logf.Close() }()
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caFile := filepath.Join(data, "tls", "ca.pem")
	if s.Admin, err = client.WaitForServer(wctx, s.Base, filepath.Join(data, "admin.token"), pki.ClientOptions{CAFile: caFile}); err != nil {
		s.Stop()
		return nil, err
	}
	s.HTTP = s.Admin.HTTP
	return s, nil
}

// Enrollment makes a site and an enrollment token good for n agents there, and a signing key
// (in keys) the server trusts: what a harness needs before its agents start and its releases
// are pushed.
func (s *Server) Enrollment(ctx context.Context, site string, n int, keys string) (api.Token, minisign.PrivateKey, error) {
	key, err := s.TrustNewKey(ctx, keys)
	if err != nil {
		return api.Token{}, key, err
	}
	if _, err := s.Admin.AddSite(ctx, client.SiteAdd{Name: site, Tier: 1}); err != nil {
		return api.Token{}, key, err
	}
	tok, err := s.Admin.CreateToken(ctx, api.TokenCreate{Site: site, Uses: n})
	return tok, key, err
}

// TrustNewKey makes a signing key pair in keys and has the server trust its public key.
func (s *Server) TrustNewKey(ctx context.Context, keys string) (minisign.PrivateKey, error) {
	var key minisign.PrivateKey
	if _, err := signing.GenerateKeyPair(keys, ""); err != nil {
		return key, err
	}
	key, err := signing.LoadSecretKey(filepath.Join(keys, signing.SecretKeyFile), "")
	if err != nil {
		return key, err
	}
	pub, _ := os.ReadFile(filepath.Join(keys, signing.PublicKeyFile))
	_, err = s.Admin.TrustKey(ctx, api.KeyTrust{PublicKey: string(pub)})
	return key, err
}

// Agent is a `ferry agent` process.
type Agent struct {
	Name string
	Data string // its data directory
	Log  string // its log file
	cmd  *exec.Cmd
	log  *os.File
}

// StartAgent starts `ferry agent` (bin) named name over data, reaching the server at addr and
// enrolling with token and labels (k=v,...; may be empty), logging into logs/NAME.log.
func StartAgent(bin, addr, token, data, name, logs, labels string) (*Agent, error) {
	logf, err := os.Create(filepath.Join(logs, name+".log"))
	if err != nil {
		return nil, err
	}
	args := []string{"agent", "--server", addr, "--token", token, "--data", data, "--name", name, "--log-level", "info"}
	if labels != "" {
		args = append(args, "--labels", labels)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	return &Agent{Name: name, Data: data, Log: logf.Name(), cmd: cmd, log: logf}, nil
}

// StopAgents ends the agents (all at once) and waits for them. The services they started run
// on, as they do when an agent is upgraded.
func StopAgents(agents []*Agent) {
	for _, a := range agents {
		a.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, a := range agents {
		a.cmd.Wait()
		a.log.Close()
	}
}

// Deploy deploys release to the n nodes selector picks and follows the change feed from the
// deploy until reached has said of an event of each node that it got there (an error from
// reached ends the wait). It returns the time just before the call and, per node, the server's
// time of that event.
func (s *Server) Deploy(ctx context.Context, release, selector string, n int, timeout time.Duration, reached func(api.Event) (bool, error)) (time.Time, map[string]time.Time, error) {
	start := time.Now()
	dep, err := s.Admin.Deploy(ctx, api.Deploy{Release: release, Selector: selector})
	if err != nil {
		return start, nil, fmt.Errorf("deploy: %w", err)
	}
	if len(dep.Nodes) != n {
		return start, nil, fmt.Errorf("deploy assigned %d nodes, want %d", len(dep.Nodes), n)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	at := map[string]time.Time{}
	errDone := errors.New("done")
	err = s.Admin.FollowEvents(wctx, dep.EventID, func(e api.Event) error {
		if ok, err := reached(e); err != nil || !ok {
			return err
		}
		at[e.Subject] = e.Time
		if len(at) == n {
			return errDone
		}
		return nil
	})
	if err != errDone {
		return start, nil, fmt.Errorf("%d of %d nodes reached what the harness waits for of %s: %v", len(at), n, release, err)
	}
	return start, at, nil
}

// WaitUp waits until n nodes of site are enrolled and up and the server has answered n
// sessions and n streams: every agent holds its stream.
func (s *Server) WaitUp(ctx context.Context, site string, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		nodes, err := s.Admin.Nodes(ctx, client.NodeQuery{Site: site})
		up := 0
		for _, nd := range nodes {
			if nd.Status == api.StatusUp {
				up++
			}
		}
		var c Counts
		if err == nil {
			c, err = s.Counts()
		}
		if err == nil && up == n && c.Sessions >= n && c.Streams >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d agents up, %d streams after 2 minutes (last error: %v)", up, n, c.Streams, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Counts are requests the server answered, from its metrics: agent sessions opened, agent
// streams opened, and blob downloads whole and from an offset (Range).
type Counts struct{ Sessions, Streams, Blobs, Ranged int }

// Minus is what c counts beyond d.
func (c Counts) Minus(d Counts) Counts {
	return Counts{c.Sessions - d.Sessions, c.Streams - d.Streams, c.Blobs - d.Blobs, c.Ranged - d.Ranged}
}

func (c Counts) String() string {
	return fmt.Sprintf("%d sessions, %d streams, %d whole and %d ranged blob requests", c.Sessions, c.Streams, c.Blobs, c.Ranged)
}

// Counts reads the server's request counts from its metrics.
func (s *Server) Counts() (Counts, error) {
	resp, err := s.HTTP.Get(s.Base + "/metrics")
	if err != nil {
		return Counts{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Counts{}, err
	}
	var c Counts
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "ferry_http_request_duration_seconds_count") {
			continue
		}
		f := strings.Fields(line)
		n, _ := strconv.Atoi(f[len(f)-1])
		switch {
		case strings.Contains(line, `/v1/agent/session"`):
			c.Sessions += n
		case strings.Contains(line, `/v1/agent/stream"`):
			c.Streams += n
		case strings.Contains(line, "/v1/blobs/") && strings.Contains(line, `code="206"`):
			c.Ranged += n
		case strings.Contains(line, "/v1/blobs/") && strings.Contains(line, `code="200"`):
			c.Blobs += n
		}
	}
	return c, nil
}

// CPUModel is the machine's CPU as /proc/cpuinfo names it.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		}
	}
	return "unknown CPU"
}

// Push builds the release in src (its ferry.yaml and files) into a bundle in dir, signs it with
// key and pushes it.
func (s *Server) Push(ctx context.Context, src, dir string, key minisign.PrivateKey) (api.Release, error) {
	f, err := os.CreateTemp(dir, "bundle-*.tar.gz")
	if err != nil {
		return api.Release{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	m, _, err := release.Build(src, f)
	if err != nil {
		return api.Release{}, err
	}
	sigFile, err := signing.SignFile(key, f.Name(), m.App+" "+m.Version)
	if err != nil {
		return api.Release{}, err
	}
	sig, err := os.ReadFile(sigFile)
	os.Remove(sigFile)
	if err != nil {
		return api.Release{}, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return api.Release{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return api.Release{}, err
	}
	return s.Admin.PushRelease(ctx, f, size, sig)
}
