package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/server"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer runs a server on loopback until ctx ends, with one site, ams, and an enrollment
// token for it.
func startServer(t *testing.T, ctx context.Context, cfg server.Config) (string, *client.Client, api.Token) {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, l)
	addr := "https://" + l.Addr().String()
	admin, _ := client.New(addr, srv.AdminToken)
	if err := admin.UseTLS(pki.ClientOptions{CAFile: srv.CAFile}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddSite(ctx, client.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.CreateToken(ctx, api.TokenCreate{Site: "ams", Uses: 20})
	if err != nil {
		t.Fatal(err)
	}
	return addr, admin, tok
}

// An agent speaking a protocol the server does not accept logs the server's message and
// retries once a minute on its clock, instead of hammering the server.
func TestProtocolMismatchRetriesSlowly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, admin, tok := startServer(t, ctx, server.Config{})

	clk := clock.NewFake(time.Now())
	logs := &lockedBuf{}
	a, err := agent.New(agent.Config{Server: addr, Token: tok.Secret, DataDir: t.TempDir(), Name: "n1",
		Protocol: api.MaxProtocol + 1, Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()

	waitFor := func(cond func() bool, what string) {
		t.Helper()
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-deadline.C:
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			case <-tick.C:
			}
		}
	}
	waitFor(func() bool { return clk.Pending() == 1 }, "the agent to wait after the first refusal")
	if n := strings.Count(logs.String(), fmt.Sprintf("protocol %d is not supported", api.MaxProtocol+1)); n != 1 {
		t.Fatalf("want one logged refusal, got %d:\n%s", n, logs.String())
	}
	clk.Advance(59 * time.Second)
	if n := strings.Count(logs.String(), "not supported"); n != 1 {
		t.Fatalf("agent retried before a minute passed:\n%s", logs.String())
	}
	clk.Advance(time.Second)
	waitFor(func() bool { return strings.Count(logs.String(), "not supported") == 2 }, "the retry after a minute")
	if nodes, _ := admin.Nodes(ctx, client.NodeQuery{}); len(nodes) != 0 {
		t.Fatalf("a refused agent was enrolled: %+v", nodes)
	}
	cancel()
	<-done
}

// An agent whose clock disagrees with the server's by years renews its session by its own
// clock: it opens one session, not one per step, and still gets its desired state pushed.
func TestClockSkewDoesNotChurnSessions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, admin, tok := startServer(t, ctx, server.Config{Clock: clock.NewFake(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))})
	a, err := agent.New(agent.Config{Server: addr, Token: tok.Secret, DataDir: t.TempDir(), Name: "n1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	wait := func(gen int64) {
		t.Helper()
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		for {
			d, changed := a.Desired()
			if d.Generation >= gen {
				return
			}
			select {
			case <-changed:
			case <-deadline.C:
				t.Fatalf("agent at generation %d, want %d", d.Generation, gen)
			}
		}
	}
	wait(1)
	if _, err := admin.Label(ctx, "n1", api.LabelChange{Set: map[string]string{"zone": "b"}}); err != nil {
		t.Fatal(err)
	}
	wait(2)
	resp, err := admin.HTTP.Get(addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, "ferry_http_request_duration_seconds_count") && strings.Contains(line, "/v1/agent/session") && !strings.HasSuffix(line, " 1") {
			t.Fatalf("want one session opened, got %s", line)
		}
	}
	cancel()
	<-done
}

// An agent of protocol 1 long-polls instead of streaming, and still gets its desired state
// pushed and its installs done: the server speaks both.
func TestProtocol1AgentStillServed(t *testing.T) {
	r := newRig(t)
	n := r.start("old", t.TempDir(), agent.Config{Protocol: 1})
	r.push("1.0.0", true)
	r.deploy("hello@1.0.0", "site=ams")
	r.waitApp("old", installed("1.0.0"))
	if running(t, n) != "1.0.0" {
		t.Fatalf("current is %q", running(t, n))
	}
	if node, _ := r.admin.Node(r.ctx, "old"); node.Facts.Protocol != 1 {
		t.Fatalf("node reports protocol %d", node.Facts.Protocol)
	}
}
