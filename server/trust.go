package server

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/pki"
	"golang.org/x/time/rate"
)

// Scheme is "https", or "http" when the server was started with --insecure-http.
func (s *Server) Scheme() string {
	if s.tls == nil {
		return "http"
	}
	return "https"
}

// checkTLSFlags refuses TLS settings that do not go together, before anything is written.
func checkTLSFlags(cfg Config) error {
	if cfg.InsecureHTTP && (cfg.TLSCert != "" || cfg.ClientCA != "") {
		return errors.New("--insecure-http serves plain HTTP: it cannot go with --tls-cert or --client-ca")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("give both --tls-cert and --tls-key, or neither (the server then makes its own CA)")
	}
	return nil
}

// serverTLS sets up the server's TLS: the operator's certificate, or, with the cluster's CA
// (nil otherwise), a certificate of this replica's own under DataDir/tls, beside the CA's
// certificate. It returns the configuration, the CA pin for enrollment tokens and the CA file
// the server wrote (empty with the operator's certificate).
func serverTLS(cfg Config, ca *pki.CA) (*tls.Config, string, string, error) {
	if cfg.InsecureHTTP {
		return nil, "", "", nil
	}
	opts := pki.ServerOptions{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, ClientCAFile: cfg.ClientCA}
	caFile := ""
	if ca != nil {
		// Clients check certificates against their wall clocks, so they are made by the wall
		// clock too, not the server's injected one.
		files, err := pki.IssueServerCert(filepath.Join(cfg.DataDir, "tls"), *ca, certHosts(cfg.Listen, cfg.Advertise), time.Now())
		if err != nil {
			return nil, "", "", err
		}
		opts.CertFile, opts.KeyFile, caFile = files.Cert, files.Key, files.CA
	}
	tc, pin, err := pki.ServerConfig(opts)
	if err != nil {
		return nil, "", "", err
	}
	return tc, pin, caFile, nil
}

// certHosts is every name and address the server's own certificate should carry: loopback,
// the host's name, the listen address (every interface's when it listens on all of them) and
// the advertised names.
func certHosts(listen string, advertise []string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
					hosts = append(hosts, n.IP.String())
				}
			}
		}
	} else {
		hosts = append(hosts, host)
	}
	for _, a := range advertise {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		hosts = append(hosts, strings.TrimSpace(a))
	}
	return hosts
}

// loadClusterKey reads the key that seals the secrets replicas share in the database (the one
// that signs sessions and challenges, the CA's key), making it on first start. It lives apart
// from the database, in a file whose mode is checked: anyone who can read it and the database
// can forge agent sessions and server certificates.
func loadClusterKey(file string) (key []byte, made bool, err error) {
	fi, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		if err := pki.WriteSecret(file, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
			return nil, false, fmt.Errorf("cluster key: %w", err)
		}
		return key, true, nil
	}
	key, err = readClusterKey(file, fi)
	return key, false, err
}

// readClusterKey reads an existing cluster key file.
func readClusterKey(file string, fi os.FileInfo) ([]byte, error) {
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("cluster key %s is readable by others (mode %04o): with the database, anyone who reads it can forge agent sessions; chmod 600 %s", file, fi.Mode().Perm(), file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("cluster key %s is not 32 or more base64 bytes", file)
	}
	return key, nil
}

// privateFiles makes the database files 0600 before the store opens them: a new database is
// created empty with that mode, which SQLite gives its -wal and -shm files too; existing ones
// (from an older Ferry or a loose umask) are narrowed.
func privateFiles(db string, others ...string) error {
	f, err := os.OpenFile(db, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	f.Close()
	for _, p := range append([]string{db}, others...) {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("database: %w", err)
		}
	}
	return nil
}

// addrLimits rate-limits the public routes per source address, before a request body is read.
type addrLimits struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	m     map[string]*addrLimit
}

type addrLimit struct {
	lim  *rate.Limiter
	seen time.Time
}

// App reports per node: an agent reports every step of an install (downloading, installing,
// starting, verifying, running or rolled back) and every change of a process (a restart, a
// crashloop), so a deploy costs it about ten; these bound what a rogue node can make the event
// log hold.
const (
	reportRate      = 2 // per second
	reportBurst     = 60
	maxReportedApps = 256
)

// maxTrackedAddrs bounds the limiter table; past it, idle entries are dropped.
const maxTrackedAddrs = 100_000

func newAddrLimits(perSecond float64, burst int) *addrLimits {
	return &addrLimits{rate: rate.Limit(perSecond), burst: burst, m: map[string]*addrLimit{}}
}

// allow takes one request from addr's budget at now; when none is left it says how long until
// there is.
func (a *addrLimits) allow(addr string, now time.Time) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.m[addr]
	if !ok {
		if len(a.m) >= maxTrackedAddrs {
			a.prune(now)
		}
		l = &addrLimit{lim: rate.NewLimiter(a.rate, a.burst)}
		a.m[addr] = l
	}
	l.seen = now
	r := l.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// prune drops addresses whose budget has refilled: forgetting them changes nothing.
func (a *addrLimits) prune(now time.Time) {
	full := time.Duration(float64(a.burst) / float64(a.rate) * float64(time.Second))
	for k, l := range a.m {
		if now.Sub(l.seen) > full {
			delete(a.m, k)
		}
	}
	if len(a.m) >= maxTrackedAddrs {
		clear(a.m) // a flood of fresh addresses: start over rather than grow without bound
	}
}

// limitPublic answers 429 with Retry-After when the source address has used its budget. An
// IPv6 source is limited by its /64, which one host or site usually holds whole.
func (s *Server) limitPublic(r *http.Request) error {
	key := sourceAddr(r)
	if ip := net.ParseIP(key); ip != nil && ip.To4() == nil {
		key = ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	ok, wait := s.limits.allow(key, s.clk.Now())
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	return &httpError{code: http.StatusTooManyRequests, retryAfter: strconv.Itoa(max(secs, 1)),
		msg: fmt.Sprintf("too many requests from %s; retry in %ds", sourceAddr(r), max(secs, 1))}
}

// sourceAddr is the request's source IP address, without the port.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// followerCounts bounds the event streams each operator token holds open.
type followerCounts struct {
	mu sync.Mutex
	m  map[string]int
}

// take counts one more stream for who, unless it already holds max.
func (f *followerCounts) take(who string, max int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]int{}
	}
	if f.m[who] >= max {
		return false
	}
	f.m[who]++
	return true
}

func (f *followerCounts) release(who string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[who]--; f.m[who] <= 0 {
		delete(f.m, who)
	}
}

// stretchReadDeadline lets an upload take as long as it needs while it moves: every read moves
// the connection's read deadline idle ahead, so only a stalled upload is cut off.
func stretchReadDeadline(w http.ResponseWriter, body io.ReadCloser, idle time.Duration) io.ReadCloser {
	return &movingDeadline{ReadCloser: body, rc: http.NewResponseController(w), idle: idle}
}

type movingDeadline struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (m *movingDeadline) Read(p []byte) (int, error) {
	m.rc.SetReadDeadline(time.Now().Add(m.idle))
	return m.ReadCloser.Read(p)
}
