package agent_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
)

// logsManifest runs two processes that each print three lines; web prints "web poked" at each
// SIGUSR1 (its trap is set before it prints).
const logsManifest = `processes:
  - name: web
    command: [sh, -c, "trap 'echo web poked' USR1; for i in 1 2 3; do echo web line $i; done; while :; do sleep 1 & wait $!; done"]
  - name: worker
    command: [sh, -c, "for i in 1 2 3; do echo worker line $i; done; exec sleep 100000"]
update: {min_healthy_time: 0s}
`

// lineReader reads a logs answer line by line, failing the test when a line does not come.
type lineReader struct {
	t     *testing.T
	lines chan string
}

func readLines(t *testing.T, r io.Reader) *lineReader {
	lr := &lineReader{t: t, lines: make(chan string, 1000)}
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
	}()
	return lr
}

// waitFor reads lines until one equals want, and returns those it read before it.
func (lr *lineReader) waitFor(want string) []string {
	lr.t.Helper()
	var before []string
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				lr.t.Fatalf("the logs ended before %q; read %q", want, before)
			}
			if l == want {
				return before
			}
			before = append(before, l)
		case <-timeout.C:
			lr.t.Fatalf("no line %q; read %q", want, before)
		}
	}
}

// logsOf reads a whole (not followed) logs answer.
func logsOf(t *testing.T, c *client.Client, node string, q client.LogsQuery) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := c.NodeLogs(ctx, node, q)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// ferry logs against a real agent running a real app: the tail of every process, prefixed with
// its name, or of one; following, what a process writes after the request, until the operator
// leaves; the agent's refusal of an unknown process.
func TestLogsOfARunningApp(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	killServices(t, dir)
	logs := &lockedBuf{}
	n := r.start("n1", dir, agent.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	r.pushManifest("1.0.0", logsManifest, nil)
	r.deploy("hello@1.0.0", "site=ams")
	na := n.waitReport(t, nil, func(a api.NodeApp) bool {
		return a.State == api.AppStateRunning && len(a.Processes) == 2 && a.Processes[0].PID != 0 && a.Processes[1].PID != 0
	})
	r.waitApp("n1", inState(api.AppStateRunning, "1.0.0"))
	var webPID int
	for _, p := range na.Processes {
		if p.Name == "web" {
			webPID = p.PID
		}
	}

	// Follow from the start: the lines written so far, then one written after the request.
	ctx, cancel := context.WithCancel(r.ctx)
	body, err := r.admin.NodeLogs(ctx, "n1", client.LogsQuery{App: "hello", Tail: 100, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, body)
	lines.waitFor("web | web line 3")
	lines.waitFor("worker | worker line 3")
	if err := syscall.Kill(webPID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	lines.waitFor("web | web poked")
	cancel()
	body.Close()
	// The agent's upload ends when the operator leaves.
	logs.waitCount(t, "logs sent", 1)

	got, err := logsOf(t, r.admin, "n1", client.LogsQuery{App: "hello", Tail: 100})
	if err != nil || !strings.Contains(got, "web | web line 1\nweb | web line 2\nweb | web line 3\n") ||
		!strings.Contains(got, "worker | worker line 1\nworker | worker line 2\nworker | worker line 3\n") {
		t.Fatalf("tail of both: %q %v", got, err)
	}
	// The web interface's node page links an admin to the same tail.
	if page := r.webPage("/nodes/n1"); !strings.Contains(page, `href="/nodes/n1/logs/hello"`) {
		t.Errorf("the node page links to no log tail:\n%s", page)
	}
	if page := r.webPage("/nodes/n1/logs/hello"); !strings.Contains(page, "web | web line 1\nweb | web line 2\nweb | web line 3\n") {
		t.Errorf("the web interface's log tail: %q", page)
	}
	got, err = logsOf(t, r.admin, "n1", client.LogsQuery{App: "hello", Process: "web", Tail: 2})
	if err != nil || got != "web line 3\nweb poked\n" {
		t.Fatalf("tail 2 of web: %q %v", got, err)
	}
	_, err = logsOf(t, r.admin, "n1", client.LogsQuery{App: "hello", Process: "db", Tail: 2})
	if client.StatusOf(err) != http.StatusNotFound || err.Error() != "app hello has no process db on node n1 (it has: web, worker)" {
		t.Fatalf("unknown process: %v", err)
	}
	_, err = logsOf(t, r.admin, "n1", client.LogsQuery{App: "nope", Tail: 2})
	if client.StatusOf(err) != http.StatusNotFound || !strings.Contains(err.Error(), "reports no app nope") {
		t.Fatalf("unknown app: %v", err)
	}
}
