package agent_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/server"
)

// proxy forwards loopback connections to target until it is closed, which also cuts every
// connection it carries: a server replica that dies, as its agents see it.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(p.close)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return "https://" + p.l.Addr().String() }

func (p *proxy) close() {
	p.l.Close()
	p.cut()
}

// cut closes every connection the proxy carries, and goes on taking new ones: a link that broke.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// An agent given several server addresses moves to the next when the one it uses goes away,
// and its desired state still reaches it there; it keeps every address in its identity.
func TestAgentFailsOver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, admin, tok := startServer(t, ctx, server.Config{})
	target := strings.TrimPrefix(addr, "https://")
	a1, a2 := startProxy(t, target), startProxy(t, target)

	logs := &lockedBuf{}
	dir := t.TempDir()
	a, err := agent.New(agent.Config{Server: a1.addr() + "," + a2.addr(), Token: tok.Secret, DataDir: dir, Name: "n1",
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if _, err := admin.WaitEvent(wctx, 0, func(e api.Event) bool { return e.Type == api.EventNodeEnrolled && e.Subject == "n1" }); err != nil {
		t.Fatal(err)
	}
	waitGen := func(gen int64) { t.Helper(); waitGeneration(t, wctx, a, gen, logs) }
	waitGen(1)
	a1.close() // the replica the agent uses dies
	res, err := admin.Label(ctx, "n1", api.LabelChange{Set: map[string]string{"zone": "b"}})
	if err != nil || len(res.Nodes) != 1 {
		t.Fatalf("label: %+v %v", res, err)
	}
	waitGen(2)
	if !strings.Contains(logs.String(), "server address failing; trying the next") {
		t.Fatalf("no failover in the log:\n%s", logs.String())
	}
	if n, err := admin.Node(ctx, "n1"); err != nil || n.Status != api.StatusUp {
		t.Fatalf("node after failover: %+v %v", n, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "identity.json")); err != nil || !strings.Contains(string(b), a2.addr()) {
		t.Fatalf("identity keeps only one address: %s %v", b, err)
	}
}

// An agent whose node is removed on the server stops, saying so, instead of asking for new
// sessions forever.
func TestRemovedNodeStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, admin, tok := startServer(t, ctx, server.Config{})
	a, err := agent.New(agent.Config{Server: addr, Token: tok.Secret, DataDir: t.TempDir(), Name: "n1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if _, err := admin.WaitEvent(ctx, 0, func(e api.Event) bool { return e.Type == api.EventNodeEnrolled && e.Subject == "n1" }); err != nil {
		t.Fatal(err)
	}
	if err := admin.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "was removed from this server") {
			t.Fatalf("the agent stopped with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the agent of a removed node is still running")
	}
}

// An agent takes a server that leaves its sparse heartbeats unanswered for api.SparseSilent
// intervals for dead, and moves on; a server that answers every third interval, as servers
// do, is never taken for dead. The server's clock stands still here, so after its first answer
// it never finds the stream quiet long enough to answer again.
func TestAgentLeavesASilentServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, tok := startServer(t, ctx, server.Config{Clock: clock.NewFake(time.Now()), HeartbeatInterval: 10 * time.Second})
	clk := clock.NewFake(time.Now())
	logs := &lockedBuf{}
	a, err := agent.New(agent.Config{Server: addr, Token: tok.Secret, DataDir: t.TempDir(), Name: "n1",
		Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	logs.waitCount(t, "desired state", 1) // the first answer: nothing is unanswered
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	const silent = "the server stopped answering"
	// Heartbeats at 10 s, 20 s, 30 s and 40 s go unanswered: the oldest has waited 30 s, the
	// three intervals a server may take, and the agent keeps the stream.
	for range api.SparseSilent + 1 {
		clk.Advance(10 * time.Second)
		if err := clk.WaitDue(wctx, 10*time.Second); err != nil {
			t.Fatalf("no next heartbeat: %v\n%s", err, logs.String())
		}
		if strings.Contains(logs.String(), silent) {
			t.Fatalf("the agent left a server within %d intervals:\n%s", api.SparseSilent, logs.String())
		}
	}
	clk.Advance(10 * time.Second) // 50 s: the oldest unanswered heartbeat has waited 40 s
	logs.waitCount(t, silent, 1)
}

// A stream cut while its session is valid comes back on that session: the agent opens one
// session and two streams, and desired state reaches it on the second.
func TestCutStreamKeepsItsSession(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, admin, tok := startServer(t, ctx, server.Config{})
	p := startProxy(t, strings.TrimPrefix(addr, "https://"))
	clk := clock.NewFake(time.Now())
	logs := &lockedBuf{}
	a, err := agent.New(agent.Config{Server: p.addr(), Token: tok.Secret, DataDir: t.TempDir(), Name: "n1",
		Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	waitGen := func(gen int64) { t.Helper(); waitGeneration(t, wctx, a, gen, logs) }
	waitGen(1)
	p.cut()
	// The agent waits its shortest reconnect backoff on its clock, then opens a new stream.
	if err := clk.WaitDue(wctx, 200*time.Millisecond); err != nil {
		t.Fatalf("the agent is not waiting to reconnect (%d timers): %v\n%s", clk.Pending(), err, logs.String())
	}
	clk.Advance(200 * time.Millisecond)
	if _, err := admin.Label(ctx, "n1", api.LabelChange{Set: map[string]string{"zone": "b"}}); err != nil {
		t.Fatal(err)
	}
	waitGen(2)
	if got := served(t, admin, addr, "/v1/agent/session"); got != 1 {
		t.Fatalf("%d sessions opened, want 1; log:\n%s", got, logs.String())
	}
	if got := served(t, admin, addr, "/v1/agent/stream"); got != 2 {
		t.Fatalf("%d streams opened, want 2; log:\n%s", got, logs.String())
	}
}

// served counts the requests the server answered on a route, from its metrics.
func served(t *testing.T, admin *client.Client, addr, route string) int {
	t.Helper()
	resp, err := admin.HTTP.Get(addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	total := 0
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, "ferry_http_request_duration_seconds_count") && strings.Contains(line, route+`"`) {
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			total += n
		}
	}
	return total
}

// waitGeneration waits until a holds desired-state generation gen, failing t with a's log when
// ctx ends first.
func waitGeneration(t *testing.T, ctx context.Context, a *agent.Agent, gen int64, logs *lockedBuf) {
	t.Helper()
	for {
		d, changed := a.Desired()
		if d.Generation >= gen {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("agent at generation %d, want %d; log:\n%s", d.Generation, gen, logs.String())
		}
	}
}
