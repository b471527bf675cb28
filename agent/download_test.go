package agent_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/clock"
)

// Links that break: a download cut off after bytes came resumes at once, and only a try that
// brought nothing backs off.

// cutter forwards loopback connections to a plain-HTTP server, and cuts the connections that
// carry blob requests while it is told to: after the first `after` bytes of the answer, or as
// the request arrives when after is 0.
type cutter struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cuts  int      // blob requests still to cut; < 0: every one
	after int64    // bytes of the answer a cut connection passes first
	reqs  []string // the blob requests seen, each as the bytes that carried it
	conns []net.Conn
}

func startCutter(t *testing.T, target string) *cutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, target: target}
	t.Cleanup(func() {
		l.Close()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, conn := range c.conns {
			conn.Close()
		}
	})
	go func() {
		for {
			down, err := l.Accept()
			if err != nil {
				return
			}
			go c.carry(down)
		}
	}()
	return c
}

func (c *cutter) addr() string { return "http://" + c.l.Addr().String() }

// set has the next cuts blob requests cut (< 0: all of them) after `after` bytes of their answer.
func (c *cutter) set(cuts int, after int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cuts, c.after = cuts, after
}

func (c *cutter) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string{}, c.reqs...)
}

// carry forwards one connection both ways, cutting it as set when it carries a blob request.
func (c *cutter) carry(down net.Conn) {
	up, err := net.Dial("tcp", c.target)
	if err != nil {
		down.Close()
		return
	}
	c.mu.Lock()
	c.conns = append(c.conns, down, up)
	c.mu.Unlock()
	cut := func() { down.Close(); up.Close() }
	var left atomic.Int64 // bytes of the answer to pass before the cut; < 0: no cut
	left.Store(-1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			p := buf[:n]
			if l := left.Load(); l >= 0 {
				if int64(n) >= l {
					down.Write(p[:l])
					cut()
					return
				}
				left.Store(l - int64(n))
			}
			if _, werr := down.Write(p); werr != nil || err != nil {
				cut()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := down.Read(buf)
		p := buf[:n]
		if bytes.Contains(p, []byte("GET /v1/blobs/")) {
			c.mu.Lock()
			c.reqs = append(c.reqs, string(p))
			cutting, after := c.cuts != 0, c.after
			if c.cuts > 0 {
				c.cuts--
			}
			c.mu.Unlock()
			if cutting && after == 0 {
				cut()
				return
			}
			if cutting {
				left.Store(after)
			}
		}
		if _, werr := up.Write(p); werr != nil || err != nil {
			cut()
			return
		}
	}
}

// A download cut off after bytes came resumes at once, with a Range request from where it
// stopped. The agent's clock never moves here, so a retry that waited for the backoff would
// never come.
func TestCutDownloadResumesAtOnce(t *testing.T) {
	r := newPlainRig(t)
	cut := startCutter(t, strings.TrimPrefix(r.addr, "http://"))
	cut.set(1, 64<<10)
	clk := clock.NewFake(time.Now())
	n := r.start("n1", t.TempDir(), agent.Config{Server: cut.addr(), Clock: clk})
	r.pushPadded("1.0.0", true, 256<<10)
	r.deploy("hello@1.0.0", "site=ams")
	r.waitApp("n1", installed("1.0.0"))
	if running(t, n) != "1.0.0" {
		t.Fatalf("current is %q", running(t, n))
	}
	reqs := cut.requests()
	if len(reqs) != 2 || strings.Contains(reqs[0], "Range:") || !strings.Contains(reqs[1], "Range: bytes=") ||
		strings.Contains(reqs[1], "Range: bytes=0-") {
		t.Fatalf("want a whole request cut off, then one for the rest; got %q", reqs)
	}
}

// A try that brought nothing back, its connection cut as the request went out, is retried after
// the backoff on the agent's clock, once.
func TestEmptyDownloadBacksOff(t *testing.T) {
	r := newPlainRig(t)
	cut := startCutter(t, strings.TrimPrefix(r.addr, "http://"))
	cut.set(-1, 0)
	clk := clock.NewFake(time.Now())
	n := r.start("n1", t.TempDir(), agent.Config{Server: cut.addr(), Clock: clk})
	r.pushPadded("1.0.0", true, 64<<10)
	r.deploy("hello@1.0.0", "site=ams")
	r.waitApp("n1", failedWith("1.0.0", "download"))
	wctx, wcancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer wcancel()
	// The first wait of the install's backoff is within a second; nothing else is due so soon.
	if err := clk.WaitDue(wctx, time.Second); err != nil {
		t.Fatalf("the agent is not waiting to retry the download (%d timers): %v", clk.Pending(), err)
	}
	tries := len(cut.requests())
	cut.set(0, 0)
	clk.Advance(time.Second)
	r.waitApp("n1", installed("1.0.0"))
	if running(t, n) != "1.0.0" {
		t.Fatalf("current is %q", running(t, n))
	}
	if got := len(cut.requests()); got != tries+1 {
		t.Fatalf("%d blob requests before the backoff ran out, %d after; want one more", tries, got)
	}
}
