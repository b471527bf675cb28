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

// lockedBuf is a log that tests can wait on.
type lockedBuf struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed and replaced on every write
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written != nil {
		close(l.written)
	}
	l.written = make(chan struct{})
	return l.b.Write(p)
}

// waitCount waits until the log holds s exactly n times, failing the test after 10 s.
func (l *lockedBuf) waitCount(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got := strings.Count(l.b.String(), s)
		if l.written == nil {
			l.written = make(chan struct{})
		}
		written := l.written
		l.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-written:
		case <-deadline.C:
			t.Fatalf("log holds %q %d times, want %d:\n%s", s, got, n, l.String())
		}
	}
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
	// The server stops before its data directory is removed: it writes there as it stops.
	sctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(sctx, l) }()
	t.Cleanup(func() { stop(); <-served })
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

// An agent speaking a protocol the server does not accept, a retired one or one too new, logs
// the server's message and retries once a minute on its clock, instead of hammering the server.
func TestProtocolMismatchRetriesSlowly(t *testing.T) {
	for _, v := range []int{api.MinProtocol - 1, api.MaxProtocol + 1} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			addr, admin, tok := startServer(t, ctx, server.Config{})

			clk := clock.NewFake(time.Now())
			logs := &lockedBuf{}
			a, err := agent.New(agent.Config{Server: addr, Token: tok.Secret, DataDir: t.TempDir(), Name: "n1",
				Protocol: v, Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); a.Run(ctx) }()

			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			defer wcancel()
			if err := clk.WaitPending(wctx, 1); err != nil {
				t.Fatalf("the agent did not wait after the first refusal: %v\n%s", err, logs.String())
			}
			refusal := fmt.Sprintf("protocol %d is not supported", v)
			logs.waitCount(t, refusal, 1)
			clk.Advance(59 * time.Second)
			if n := strings.Count(logs.String(), refusal); n != 1 {
				t.Fatalf("agent retried before a minute passed:\n%s", logs.String())
			}
			clk.Advance(time.Second)
			logs.waitCount(t, refusal, 2)
			if nodes, _ := admin.Nodes(ctx, client.NodeQuery{}); len(nodes) != 0 {
				t.Fatalf("a refused agent was enrolled: %+v", nodes)
			}
			cancel()
			<-done
		})
	}
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
