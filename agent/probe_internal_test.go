package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// probeOrders are a link's two orders, as a server would send them, without the address.
func probeOrders() (listen, connect api.ProbeOrder) {
	listen = api.ProbeOrder{ProbeLinkRef: api.ProbeLinkRef{Probe: 1, Link: 0}, Role: api.ProbeListen, Peer: "n1",
		Secret: strings.Repeat("ab", api.ProbeSecretSize), Bytes: 128 << 10, Duration: api.Duration(5 * time.Second)}
	connect = listen
	connect.Role, connect.Peer = api.ProbeConnect, "n2"
	return listen, connect
}

// openListener opens a link's listener and serves it until the test ends; serve's error comes
// on the channel.
func openListener(t *testing.T, clk clock.Clock, o api.ProbeOrder) (string, <-chan error) {
	t.Helper()
	pl, err := listenProbe(o, clk)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served, done := make(chan error, 1), make(chan struct{})
	go func() { defer close(done); served <- pl.serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(pl.port())), served
}

// closedAtOnce fails the test unless the listener closes c without a word: a read ends with
// EOF (or a reset) before the deadline.
func closedAtOnce(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read %d bytes, %v: the connection was not closed", n, err)
	}
}

// A connection that presents a wrong secret is closed at once, one that presents none is
// closed too, and the listener serves the peer that presents the right one, which measures
// round trips and both directions.
func TestProbeListenerRefusesForgedPeers(t *testing.T) {
	listen, connect := probeOrders()
	addr, served := openListener(t, clock.Real{}, listen)

	forged, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	forged.Write([]byte(strings.Repeat("x", api.ProbeSecretSize)))
	closedAtOnce(t, forged)

	// One that says nothing does not hold the listener up, and is closed too.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	connect.Addr = addr
	res, err := measureProbe(context.Background(), connect, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Validate(); err != nil || res.Error != "" {
		t.Fatalf("result %+v: %v", res, err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	closedAtOnce(t, silent)
	// Served once, the listener is gone.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after serving its peer")
	}
}

// A peer with the secret that asks for more bytes than the order says is cut off: the
// listener is bounded by the server's order, not by its peer.
func TestProbeListenerBoundsBytes(t *testing.T) {
	listen, _ := probeOrders()
	addr, served := openListener(t, clock.Real{}, listen)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	secret := make([]byte, api.ProbeSecretSize)
	for i := range secret {
		secret[i] = 0xab
	}
	cmd := make([]byte, 9)
	cmd[0] = 'd'
	binary.BigEndian.PutUint64(cmd[1:], 1<<40)
	c.Write(append(secret, cmd...))
	closedAtOnce(t, c)
	if err := <-served; err == nil || !strings.Contains(err.Error(), "out of the protocol") {
		t.Fatalf("serve: %v", err)
	}
}

// A listener no peer reaches closes when the link's time is up, on the agent's clock.
func TestProbeListenerEndsInTime(t *testing.T) {
	listen, _ := probeOrders()
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	addr, served := openListener(t, clk, listen)
	if err := clk.WaitPending(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Duration(listen.Duration) + api.ProbeSetup)
	if err := <-served; err == nil || !strings.Contains(err.Error(), "no peer presented") {
		t.Fatalf("serve: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after its time")
	}
}

// An order for a link under way is not carried out again; once the link is through, it is.
func TestProbeOrderRepeated(t *testing.T) {
	var a Agent
	ref := api.ProbeLinkRef{Probe: 1, Link: 2}
	if !a.takeLink(ref) || a.takeLink(ref) || !a.takeLink(api.ProbeLinkRef{Probe: 1, Link: 3}) {
		t.Fatal("a repeated order was taken, or a new one refused")
	}
	a.probing.Delete(ref)
	if !a.takeLink(ref) {
		t.Fatal("an order for a link through was refused")
	}
}
