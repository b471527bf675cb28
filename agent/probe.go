package agent

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// A mesh probe's link (api/probe.go tells the whole walk) reaches each of its two agents as a
// SyncReply carrying an api.ProbeOrder. The one told to listen opens a listener on a port the
// system picks, reports it, and serves the first connection that presents the link's secret;
// it closes any other at once, and the listener itself once served or after the link's time.
// The one told to connect measures and reports.
//
// On the wire, after the 32 bytes of the secret, the connecting side sends commands of 9
// bytes, a letter and a big-endian number:
//
//	p SEQ   ping: the listener echoes the 9 bytes
//	u N     upload: N bytes follow; the listener answers one byte, 'k', once it has them all
//	d N     download: the listener sends N bytes
//
// N must be the order's Bytes; anything else ends the connection. Socket deadlines are the
// kernel's, so they are set from the wall clock; the listener's life and the measures are
// taken on the agent's clock.

// maxProbes bounds the links an agent takes part in at once; the server gives it one at a time.
const maxProbes = 2

// probeGreeting bounds how long a connection to a listener may take to present its secret,
// and maxGreetings how many may be presenting at once; more are closed at once.
const (
	probeGreeting = 2 * time.Second
	maxGreetings  = 16
)

// serveProbe carries out an order from the server and reports to it.
func (a *Agent) serveProbe(ctx context.Context, o api.ProbeOrder) {
	if err := o.Validate(); err != nil {
		a.log.Warn("ignored a probe order", "err", err)
		return
	}
	// A server sends an order again on each stream the agent opens while the link waits for
	// it, since one sent on a stream that broke may never have come.
	if !a.takeLink(o.ProbeLinkRef) {
		a.log.Debug("ignored a repeated probe order", "probe", o.Probe, "link", o.Link)
		return
	}
	defer a.probing.Delete(o.ProbeLinkRef)
	busy := a.probes.Add(1) > maxProbes
	defer a.probes.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(o.Duration)+api.ProbeSetup)
	defer cancel()
	log := a.log.With("probe", o.Probe, "link", o.Link, "role", o.Role, "peer", o.Peer)
	if o.Role == api.ProbeListen {
		var l api.ProbeListening
		var pl *probeListener
		var err error
		if busy {
			err = fmt.Errorf("node %s takes part in %d probes already", a.Name(), maxProbes)
		} else {
			pl, err = listenProbe(o, a.clk)
		}
		if err != nil {
			l.Error = err.Error()
		} else {
			l.Port, l.Host = pl.port(), a.probeHost()
			defer pl.close()
		}
		if err := a.api.ProbeListening(ctx, a.sessionToken(), o.ProbeLinkRef, l); err != nil {
			log.Warn("probe listener not reported", "err", err)
			return
		}
		if pl == nil {
			log.Warn("probe listener not opened", "err", l.Error)
			return
		}
		log.Info("probe listening", "port", l.Port)
		if err := pl.serve(ctx); err != nil {
			log.Warn("probe link served in part or not at all", "err", err)
			return
		}
		log.Info("probe link served")
		return
	}
	var res api.ProbeResult
	if busy {
		res.Error = fmt.Sprintf("node %s takes part in %d probes already", a.Name(), maxProbes)
	} else if r, err := measureProbe(ctx, o, a.clk); err != nil {
		res.Error = err.Error()
	} else {
		res = r
	}
	if len(res.Error) > api.MaxProbeError {
		res.Error = res.Error[:api.MaxProbeError]
	}
	if err := a.api.ProbeResult(ctx, a.sessionToken(), o.ProbeLinkRef, res); err != nil {
		log.Warn("probe result not reported", "err", err)
		return
	}
	log.Info("probe measured", "up_mbps", res.UpMbps, "down_mbps", res.DownMbps, "rtt_avg_ms", res.RTTms.Avg, "error", res.Error)
}

// probeHost is the address the agent states its probe listeners are reached at: the
// configured one, else the local address of the route to the server (a UDP socket's connect
// picks the route and sends nothing). Empty when neither is known: the server then takes the
// address the report came from.
func (a *Agent) probeHost() string {
	if a.cfg.ProbeAddress != "" {
		return a.cfg.ProbeAddress
	}
	u, err := url.Parse(a.api.Addr())
	if err != nil {
		return ""
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "443")))
	if err != nil {
		return ""
	}
	defer c.Close()
	ip, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP)
	if host := ip.Unmap().String(); ok && api.CheckProbeHost(host) == nil {
		return host
	}
	return ""
}

// takeLink notes that the agent works on a link, and reports false when it does already.
func (a *Agent) takeLink(ref api.ProbeLinkRef) bool {
	_, under := a.probing.LoadOrStore(ref, struct{}{})
	return !under
}

// probeListener is one link's listener.
type probeListener struct {
	l      net.Listener
	clk    clock.Clock
	secret []byte
	bytes  int64
	within time.Duration // how long it waits for its peer and serves it
}

// listenProbe opens a listener for o on a port the system picks, on every address.
func listenProbe(o api.ProbeOrder, clk clock.Clock) (*probeListener, error) {
	secret, err := hex.DecodeString(o.Secret)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return nil, fmt.Errorf("listen for probe: %w", err)
	}
	return &probeListener{l: l, clk: clk, secret: secret, bytes: o.Bytes, within: time.Duration(o.Duration) + api.ProbeSetup}, nil
}

func (p *probeListener) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *probeListener) close() { p.l.Close() }

// serve waits for the peer that presents the secret, closing every other connection as soon
// as it shows it has not (a wrong secret, or none within probeGreeting), then serves its
// commands; it returns when the peer is through, or when the link's time or ctx ends. The
// connections greet at once, at most maxGreetings of them, so none can hold the peer up.
// The listener is closed on return.
func (p *probeListener) serve(ctx context.Context) error {
	defer p.l.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := p.clk.NewTimer(p.within)
	defer t.Stop()
	go func() {
		select {
		case <-t.C():
			cancel()
		case <-ctx.Done():
		}
	}()
	defer context.AfterFunc(ctx, func() { p.l.Close() })()
	won := make(chan net.Conn)
	accepted := make(chan error, 1)
	go func() {
		var greeting atomic.Int32
		for {
			c, err := p.l.Accept()
			if err != nil {
				accepted <- err
				return
			}
			if greeting.Add(1) > maxGreetings {
				greeting.Add(-1)
				c.Close()
				continue
			}
			go func() {
				defer greeting.Add(-1)
				if p.greeted(c) {
					select {
					case won <- c:
						return
					case <-ctx.Done():
					}
				}
				c.Close()
			}()
		}
	}()
	var c net.Conn
	select {
	case c = <-won:
	case err := <-accepted:
		return fmt.Errorf("no peer presented the probe's secret in time: %w", err)
	}
	p.l.Close() // one peer per link
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()
	c.SetDeadline(time.Now().Add(p.within))
	return p.answer(c)
}

// greeted reports whether c presents the secret, within probeGreeting.
func (p *probeListener) greeted(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(probeGreeting))
	got := make([]byte, len(p.secret))
	if _, err := io.ReadFull(c, got); err != nil {
		return false
	}
	c.SetReadDeadline(time.Time{})
	return subtle.ConstantTimeCompare(got, p.secret) == 1
}

// answer serves a peer's commands until it closes the connection.
func (p *probeListener) answer(c net.Conn) error {
	cmd := make([]byte, 9)
	buf := make([]byte, 64<<10)
	pings, ups, downs := 0, 0, 0
	for {
		if _, err := io.ReadFull(c, cmd); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint64(cmd[1:])
		switch {
		case cmd[0] == 'p' && pings < api.ProbePings:
			pings++
			if _, err := c.Write(cmd); err != nil {
				return err
			}
		case cmd[0] == 'u' && ups == 0 && n == uint64(p.bytes):
			ups++
			if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, p.bytes), buf); err != nil {
				return err
			}
			if _, err := c.Write([]byte{'k'}); err != nil {
				return err
			}
		case cmd[0] == 'd' && downs == 0 && n == uint64(p.bytes):
			downs++
			if err := sendZeros(c, p.bytes, buf); err != nil {
				return err
			}
		default:
			return fmt.Errorf("the peer sent a command out of the protocol (%q %d)", cmd[0], n)
		}
	}
}

// sendZeros writes n zero bytes to w.
func sendZeros(w io.Writer, n int64, buf []byte) error {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// measureProbe connects to the listener of o, presents the secret, and measures
// api.ProbePings round trips, then o.Bytes each way, all within o.Duration.
func measureProbe(ctx context.Context, o api.ProbeOrder, clk clock.Clock) (api.ProbeResult, error) {
	var res api.ProbeResult
	secret, err := hex.DecodeString(o.Secret)
	if err != nil {
		return res, err
	}
	within := time.Duration(o.Duration)
	d := net.Dialer{Timeout: within}
	c, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return res, fmt.Errorf("connect to %s at %s: %w", o.Peer, o.Addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(within))
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if _, err := c.Write(secret); err != nil {
		return res, fmt.Errorf("greet %s: %w", o.Peer, err)
	}
	cmd := func(letter byte, n uint64) []byte {
		b := make([]byte, 9)
		b[0] = letter
		binary.BigEndian.PutUint64(b[1:], n)
		return b
	}
	fail := func(what string, err error) (api.ProbeResult, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return api.ProbeResult{}, fmt.Errorf("%s with %s: %w", what, o.Peer, err)
	}
	echo := make([]byte, 9)
	var sum time.Duration
	for i := range api.ProbePings {
		ping := cmd('p', uint64(i))
		start := clk.Now()
		if _, err := c.Write(ping); err != nil {
			return fail("ping", err)
		}
		if _, err := io.ReadFull(c, echo); err != nil {
			return fail("ping", err)
		}
		rtt := max(clk.Now().Sub(start), time.Microsecond)
		if string(echo) != string(ping) {
			return fail("ping", errors.New("the echo differs"))
		}
		sum += rtt
		ms := float64(rtt) / float64(time.Millisecond)
		if i == 0 || ms < res.RTTms.Min {
			res.RTTms.Min = ms
		}
		res.RTTms.Max = max(res.RTTms.Max, ms)
	}
	res.RTTms.Avg = min(max(float64(sum)/float64(time.Millisecond)/api.ProbePings, res.RTTms.Min), res.RTTms.Max)

	buf := make([]byte, 64<<10)
	start := clk.Now()
	if _, err := c.Write(cmd('u', uint64(o.Bytes))); err != nil {
		return fail("send", err)
	}
	if err := sendZeros(c, o.Bytes, buf); err != nil {
		return fail("send", err)
	}
	if _, err := io.ReadFull(c, echo[:1]); err != nil || echo[0] != 'k' {
		return fail("send", errors.Join(err, errors.New("no acknowledgement")))
	}
	res.UpMbps = mbps(o.Bytes, clk.Now().Sub(start))

	start = clk.Now()
	if _, err := c.Write(cmd('d', uint64(o.Bytes))); err != nil {
		return fail("receive", err)
	}
	if n, err := io.CopyBuffer(io.Discard, io.LimitReader(c, o.Bytes), buf); err != nil || n != o.Bytes {
		return fail("receive", errors.Join(err, fmt.Errorf("got %d of %d bytes", n, o.Bytes)))
	}
	res.DownMbps = mbps(o.Bytes, clk.Now().Sub(start))
	return res, nil
}

// mbps is the throughput of n bytes in d, in Mbit/s.
func mbps(n int64, d time.Duration) float64 {
	return float64(n) * 8 / max(d, time.Microsecond).Seconds() / 1e6
}
