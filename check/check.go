// Package check runs health checks — an HTTP request, a TCP connect, a file system's free
// space, or a plugin that speaks the Nagios plugin protocol — parses plugin output and
// performance data, and keeps a check's state across runs as Nagios does (soft and hard states,
// retries, flap detection: Tracker). It knows nothing of the server or of manifests: the agent
// turns a manifest's checks and the operator's into Specs, with the ${FERRY_PORT_*} references
// already expanded.
package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// State is a check's verdict, numbered as Nagios plugins exit.
type State int

// The four states of the Nagios plugin protocol.
const (
	OK       State = 0
	Warning  State = 1
	Critical State = 2
	Unknown  State = 3
)

var stateNames = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// String gives the state as Nagios writes it: OK, WARNING, CRITICAL or UNKNOWN.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText writes the state's name, so JSON carries "CRITICAL" rather than 2.
func (s State) MarshalText() ([]byte, error) {
	if s < OK || s > Unknown {
		return nil, fmt.Errorf("invalid check state %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("invalid check state %q: want OK, WARNING, CRITICAL or UNKNOWN", b)
}

// Result is one run of a check.
type Result struct {
	State State `json:"state"`
	// Output is the one-line text: the plugin's first line, or the reason an HTTP or TCP
	// check failed.
	Output string `json:"output"`
	// Long is a plugin's further lines of text (Nagios's long output), without perfdata.
	Long     string        `json:"long,omitempty"`
	Perf     []Perf        `json:"perf,omitempty"`
	Duration time.Duration `json:"duration"`
	// Time is when the check started.
	Time time.Time `json:"time"`
}

// Spec says what to check: exactly one of HTTP, TCP, Exec or Disk.
type Spec struct {
	// HTTP is a URL; a 2xx answer within the timeout is OK, anything else CRITICAL. Redirects
	// are not followed: a health endpoint that redirects is not answering.
	HTTP string
	// TCP is a host:port; a connection accepted within the timeout is OK.
	TCP string
	// Exec is a plugin's command line. A relative program path is taken from Dir.
	Exec []string
	// Dir is the plugin's working directory; empty means the agent's own.
	Dir string
	// Env is the plugin's whole environment ("K=V"): nothing of the agent's is inherited.
	Env []string
	// Disk is a path whose file system's free space is checked against Warn and Crit
	// (ParseThreshold; defaults DefaultDiskWarn and DefaultDiskCrit).
	Disk       string
	Warn, Crit string
	// Timeout bounds the check; 0 means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is the check timeout when a Spec gives none: the plugin guidelines' default.
const DefaultTimeout = 10 * time.Second

// DefaultMaxOutput caps how much of a plugin's standard output is kept; the rest is read and
// dropped, so a chatty plugin neither blocks on a full pipe nor grows the agent.
const DefaultMaxOutput = 64 << 10

// Runner runs checks. Its zero value is not usable: make one with NewRunner.
type Runner struct {
	clk  clock.Clock
	http *http.Client
	// MaxOutput caps a plugin's kept standard output; 0 means DefaultMaxOutput.
	MaxOutput int
}

// NewRunner returns a Runner that reads the time from clk (Result.Time and Duration); the
// timeouts themselves are context deadlines.
func NewRunner(clk clock.Clock) *Runner {
	tr := &http.Transport{
		Proxy:               nil, // a health check talks to the service itself, never a proxy
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: DefaultTimeout,
		DialContext:         (&net.Dialer{}).DialContext,
	}
	return &Runner{clk: clk, http: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Run runs one check and returns its result; it never returns before the check's process, if
// any, and all of its process group are gone.
func (r *Runner) Run(ctx context.Context, s Spec) Result {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := r.clk.Now()
	var res Result
	switch kinds := btoi(s.HTTP != "") + btoi(s.TCP != "") + btoi(len(s.Exec) > 0) + btoi(s.Disk != ""); {
	case kinds != 1:
		res = Result{State: Unknown, Output: "invalid check: give exactly one of http, tcp, exec or disk"}
	case s.HTTP != "":
		res = r.runHTTP(ctx, s.HTTP, timeout)
	case s.TCP != "":
		res = r.runTCP(ctx, s.TCP, timeout)
	case s.Disk != "":
		res = r.runDisk(ctx, s, timeout)
	default:
		res = r.runExec(ctx, s, timeout)
	}
	res.Time = start
	res.Duration = r.clk.Now().Sub(start)
	return res
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxBody bounds how much of an HTTP answer is read: enough for a reason on one line.
const maxBody = 4 << 10

func (r *Runner) runHTTP(ctx context.Context, url string, timeout time.Duration) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		// A URL that does not parse is the check's fault, not the service's.
		return Result{State: Unknown, Output: "HTTP UNKNOWN: " + oneLine(err.Error())}
	}
	req.Header.Set("User-Agent", "ferry-check")
	start := r.clk.Now()
	resp, err := r.http.Do(req)
	if err != nil {
		return netFailure(ctx, "HTTP", err, timeout)
	}
	defer resp.Body.Close()
	// The answer's head decides; the body is read only to say why a failure failed (a healthy
	// endpoint may well stream forever).
	elapsed := r.clk.Now().Sub(start)
	perf := []Perf{{Label: "time", Value: elapsed.Seconds(), UOM: "s", Min: float(0)}}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return Result{State: OK, Output: "HTTP OK: " + resp.Status, Perf: perf}
	}
	body := make([]byte, maxBody)
	n, _ := io.ReadFull(resp.Body, body)
	msg := "HTTP CRITICAL: " + resp.Status
	if line := oneLine(string(body[:n])); line != "" {
		msg += ": " + line
	}
	return Result{State: Critical, Output: clip(msg, 512), Perf: perf}
}

func (r *Runner) runTCP(ctx context.Context, addr string, timeout time.Duration) Result {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Result{State: Unknown, Output: "TCP UNKNOWN: " + oneLine(err.Error())}
	}
	start := r.clk.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return netFailure(ctx, "TCP", err, timeout)
	}
	c.Close()
	elapsed := r.clk.Now().Sub(start)
	return Result{State: OK, Output: "TCP OK: connected to " + addr,
		Perf: []Perf{{Label: "time", Value: elapsed.Seconds(), UOM: "s", Min: float(0)}}}
}

// netFailure says in one line why a connection or request failed: CRITICAL, unless the caller
// cancelled the check, which learned nothing about the service.
func netFailure(ctx context.Context, kind string, err error, timeout time.Duration) Result {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return Result{State: Unknown, Output: "check cancelled"}
	case ctx.Err() != nil:
		return Result{State: Critical, Output: fmt.Sprintf("%s CRITICAL: no answer within %v", kind, timeout)}
	}
	var op *net.OpError
	if errors.As(err, &op) {
		err = op // without the url.Error's repetition of method and URL
	}
	return Result{State: Critical, Output: kind + " CRITICAL: " + oneLine(err.Error())}
}

func float(v float64) *float64 { return &v }

// oneLine keeps the first non-empty line of s, trimmed.
func oneLine(s string) string {
	for _, l := range strings.Split(strings.ToValidUTF8(s, "\uFFFD"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	return strings.ToValidUTF8(s, "") + "…"
}
