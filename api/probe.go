package api

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/labels"
)

// `ferry probe mesh --selector SEL` measures TCP throughput and round-trip time between the
// selected nodes' agents. The operator asks any replica (POST /v1/probes), which stores the
// probe and records probe.requested; the leader's probe engine then works through the probe's
// links, each an unordered pair of nodes measured over one TCP connection, with each node in
// one link at a time:
//
//  1. probe.link_started (subject: the link's To node): the replica holding To's stream sends
//     it a ProbeOrder to listen (or, when To has no stream open, the replica where it opens
//     one, within the link's time); its agent opens a listener on a port it picks and reports
//     the port and the host peers reach it at (POST /v1/agent/probes/{id}/links/{link}/listening).
//  2. probe.link_listening (subject: From): the replica holding From's stream sends it a
//     ProbeOrder to connect to that address; the agent connects, presents the link's secret
//     first (the listener closes any connection that does not), measures ProbePings round
//     trips, then Bytes each way, and reports (POST /v1/agent/probes/{id}/links/{link}/result).
//  3. probe.link_done: the engine starts the next links; once every link is done or failed,
//     probe.completed.
//
// A link whose node is down, or that has not reported by its deadline (Duration plus
// ProbeSetup after it started), fails with an error; the probe completes all the same. One
// connection measures both directions, so n nodes take n·(n-1)/2 connections for the full
// directed matrix of n·(n-1) pairs. The secret is never stored nor put in an event: every
// replica derives it from the cluster's secret, the probe and the link.

// Probe event types.
const (
	EventProbeRequested     = "probe.requested"      // ProbeRequested
	EventProbeLinkStarted   = "probe.link_started"   // ProbeLinkStarted
	EventProbeLinkListening = "probe.link_listening" // ProbeLinkListening
	EventProbeLinkDone      = "probe.link_done"      // ProbeLinkDone
	EventProbeCompleted     = "probe.completed"      // ProbeCompleted
)

// Bounds of a probe.
const (
	MaxProbeNodes        = 32       // nodes in one probe: 496 links
	DefaultProbeBytes    = 16 << 20 // sent each way on each link
	MinProbeBytes        = 64 << 10
	MaxProbeBytes        = 256 << 20
	DefaultProbeDuration = 10 * time.Second // per link: pings and both transfers
	MinProbeDuration     = time.Second
	MaxProbeDuration     = time.Minute
	ProbePings           = 10 // round trips measured per link
	// ProbeSetup is what a link may take besides its Duration: the listener's report, the
	// order to connect, the connection and the result's report.
	ProbeSetup = 10 * time.Second
	// MaxProbeParallel bounds the links measured at once, whatever the number of nodes.
	MaxProbeParallel = 8
	// ProbeSecretSize is the length of a link's secret, in bytes (hex: twice as many digits).
	ProbeSecretSize = 32
	// MaxProbeError bounds an error a link records.
	MaxProbeError = 512
)

// Probe states, and link states.
const (
	ProbeStateRunning   = "running"
	ProbeStateCompleted = "completed"

	LinkPending   = "pending"
	LinkRunning   = "running"
	LinkListening = "listening"
	LinkDone      = "done"
	LinkFailed    = "failed"
)

// ProbeSubject is the subject of a probe's own events.
func ProbeSubject(id int64) string { return "probe/" + strconv.FormatInt(id, 10) }

// ProbeStart is the body of POST /v1/probes. Bytes 0 and Duration 0 mean the defaults.
type ProbeStart struct {
	Selector string   `json:"selector"`
	Bytes    int64    `json:"bytes,omitempty"`
	Duration Duration `json:"duration,omitempty"`
}

// Normalize fills the defaults and checks the bounds.
func (p *ProbeStart) Normalize() error {
	if _, err := labels.ParseSelector(p.Selector); err != nil {
		return err
	}
	if p.Bytes == 0 {
		p.Bytes = DefaultProbeBytes
	}
	if p.Duration == 0 {
		p.Duration = Duration(DefaultProbeDuration)
	}
	return checkProbeBounds(p.Bytes, p.Duration)
}

// checkProbeBounds checks what a link sends each way and how long it may take.
func checkProbeBounds(bytes int64, duration Duration) error {
	if bytes < MinProbeBytes || bytes > MaxProbeBytes {
		return fmt.Errorf("invalid bytes %d: want %d KiB to %d MiB", bytes, MinProbeBytes>>10, MaxProbeBytes>>20)
	}
	if d := time.Duration(duration); d < MinProbeDuration || d > MaxProbeDuration {
		return fmt.Errorf("invalid duration %s: want %s to %s", d, MinProbeDuration, MaxProbeDuration)
	}
	return nil
}

// Probe is a mesh probe as operators see it: Pairs is the directed matrix, two pairs per link.
// A probe that is running shows the pairs measured so far; the others are pending or running.
type Probe struct {
	ID          int64      `json:"id"`
	State       string     `json:"state"`
	Selector    string     `json:"selector"`
	Bytes       int64      `json:"bytes"`
	Duration    Duration   `json:"duration"`
	Nodes       []string   `json:"nodes"`
	Links       int        `json:"links"`           // connections: one per unordered pair of nodes
	Done        int        `json:"done"`            // links measured
	Failed      int        `json:"failed"`          // links that failed
	Pairs       []Pair     `json:"pairs,omitempty"` // every directed pair; not in lists
	CreatedAt   time.Time  `json:"created_at"`
	CreatedBy   string     `json:"created_by"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// Event is the probe.requested event, in the answer to a start: follow the log from
	// there to see the probe through.
	Event int64 `json:"event,omitempty"`
}

// Pair is one direction of a link: throughput from From to To, and the link's round trips.
type Pair struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	State string  `json:"state"`
	Mbps  float64 `json:"mbps"`
	RTTms RTT     `json:"rtt_ms"`
	Error string  `json:"error"`
}

// RTT is the minimum, mean and maximum of a link's round trips, in milliseconds.
type RTT struct {
	Min float64 `json:"min"`
	Avg float64 `json:"avg"`
	Max float64 `json:"max"`
}

// ProbeLinkRef names one link of a probe.
type ProbeLinkRef struct {
	Probe int64 `json:"probe"`
	Link  int   `json:"link"`
}

// ProbeRequested is the payload of probe.requested.
type ProbeRequested struct {
	Nodes    []string `json:"nodes"`
	Links    int      `json:"links"`
	Bytes    int64    `json:"bytes"`
	Duration Duration `json:"duration"`
}

// ProbeLinkStarted is the payload of probe.link_started: To is to listen for From.
type ProbeLinkStarted struct {
	ProbeLinkRef
	From     string   `json:"from"`
	To       string   `json:"to"`
	Bytes    int64    `json:"bytes"`
	Duration Duration `json:"duration"`
}

// ProbeLinkListening is the payload of probe.link_listening: From is to connect to Addr.
type ProbeLinkListening struct {
	ProbeLinkStarted
	Addr string `json:"addr"`
}

// ProbeLinkDone is the payload of probe.link_done.
type ProbeLinkDone struct {
	ProbeLinkRef
	From  string `json:"from"`
	To    string `json:"to"`
	Error string `json:"error,omitempty"`
}

// ProbeCompleted is the payload of probe.completed.
type ProbeCompleted struct {
	Links  int `json:"links"`
	Failed int `json:"failed"`
}

// Roles of a ProbeOrder.
const (
	ProbeListen  = "listen"
	ProbeConnect = "connect"
)

// ProbeOrder asks an agent to take part in one link, in a SyncReply: to listen for Peer, or to
// connect to Addr. Secret is the link's, in hex.
type ProbeOrder struct {
	ProbeLinkRef
	Role     string   `json:"role"`
	Peer     string   `json:"peer"`
	Addr     string   `json:"addr,omitempty"`
	Secret   string   `json:"secret"`
	Bytes    int64    `json:"bytes"`
	Duration Duration `json:"duration"`
}

// Validate checks an order from a server.
func (o ProbeOrder) Validate() error {
	if o.Probe <= 0 || o.Link < 0 || o.Link >= MaxProbeNodes*(MaxProbeNodes-1)/2 {
		return fmt.Errorf("invalid probe link %d/%d", o.Probe, o.Link)
	}
	switch o.Role {
	case ProbeListen:
	case ProbeConnect:
		if o.Addr == "" || len(o.Addr) > 64 {
			return fmt.Errorf("invalid probe address %q", o.Addr)
		}
	default:
		return fmt.Errorf("invalid probe role %q: want listen or connect", o.Role)
	}
	if err := labels.CheckName("node name", o.Peer); err != nil {
		return err
	}
	if b, err := hex.DecodeString(o.Secret); err != nil || len(b) != ProbeSecretSize {
		return errors.New("invalid probe secret: want 64 hex digits")
	}
	return checkProbeBounds(o.Bytes, o.Duration)
}

// ProbeListening is the body of POST /v1/agent/probes/{id}/links/{link}/listening: the port
// the agent listens on, or why it cannot. Host is the IP address the agent states its peers
// reach it at (its configured probe address, or the local address it reaches the server
// from); without it the server takes the address the report came from, which is a proxy's
// when one stands between agents and server.
type ProbeListening struct {
	Port  int    `json:"port,omitempty"`
	Host  string `json:"host,omitempty"`
	Error string `json:"error,omitempty"`
}

// ProbeResult is the body of POST /v1/agent/probes/{id}/links/{link}/result: what the
// connecting agent measured, or why it could not.
type ProbeResult struct {
	RTTms    RTT     `json:"rtt_ms"`
	UpMbps   float64 `json:"up_mbps"`   // From → To
	DownMbps float64 `json:"down_mbps"` // To → From
	Error    string  `json:"error,omitempty"`
}

// maxMbps bounds a reported throughput: 10 Tbit/s.
const maxMbps = 1e7

// maxRTTms bounds a reported round trip: longer than any link's duration.
const maxRTTms = float64(MaxProbeDuration / time.Millisecond)

// Validate checks a result from an agent: an error alone, or measures in their ranges.
func (r ProbeResult) Validate() error {
	if len(r.Error) > MaxProbeError {
		return fmt.Errorf("probe error is %d bytes; at most %d", len(r.Error), MaxProbeError)
	}
	if r.Error != "" {
		if r != (ProbeResult{Error: r.Error}) {
			return errors.New("a failed probe result carries its error alone")
		}
		return nil
	}
	for _, v := range []float64{r.RTTms.Min, r.RTTms.Avg, r.RTTms.Max} {
		if math.IsNaN(v) || v <= 0 || v > maxRTTms {
			return fmt.Errorf("invalid round trip %v ms: want more than 0, at most %v", v, maxRTTms)
		}
	}
	if r.RTTms.Min > r.RTTms.Avg || r.RTTms.Avg > r.RTTms.Max {
		return fmt.Errorf("invalid round trips: min %v, avg %v, max %v are out of order", r.RTTms.Min, r.RTTms.Avg, r.RTTms.Max)
	}
	for _, v := range []float64{r.UpMbps, r.DownMbps} {
		if math.IsNaN(v) || v <= 0 || v > maxMbps {
			return fmt.Errorf("invalid throughput %v Mbit/s: want more than 0, at most %v", v, maxMbps)
		}
	}
	return nil
}

// Validate checks a listener's report.
func (l ProbeListening) Validate() error {
	if len(l.Error) > MaxProbeError {
		return fmt.Errorf("probe error is %d bytes; at most %d", len(l.Error), MaxProbeError)
	}
	if l.Error == "" && (l.Port <= 0 || l.Port > 65535) {
		return fmt.Errorf("invalid port %d: want 1 to 65535", l.Port)
	}
	if l.Error != "" && (l.Port != 0 || l.Host != "") {
		return errors.New("a listener that failed reports its error alone")
	}
	if l.Host != "" {
		return CheckProbeHost(l.Host)
	}
	return nil
}

// CheckProbeHost checks an address a probe listener is stated to be reached at: an IP address
// a peer can dial, written as netip writes it (no zone, no name to resolve).
func CheckProbeHost(host string) error {
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || a.String() != host || a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("invalid probe host %q: want an IP address peers can reach, like 192.0.2.10", host)
	}
	return nil
}
