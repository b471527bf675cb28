package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
)

// logsAgent is a raw agent of node with the hello app reported, streaming.
func logsAgent(t *testing.T, h *harness, node string) (*client.Client, string, *client.Stream) {
	t.Helper()
	ac, open := rawAgent(t, h, "ams", node)
	sess := open().Token
	st := openStream(t, ac, sess)
	apps := []api.NodeApp{{App: "hello", Version: "1.0.0"}}
	if err := st.Send(api.Sync{Apps: &apps}); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, st); err != nil {
		t.Fatal(err)
	}
	return ac, sess, st
}

// logsAsked waits for the logs request the server passes down st.
func logsAsked(t *testing.T, st *client.Stream) api.LogsRequest {
	t.Helper()
	for {
		r, err := recv(t, st)
		if err != nil {
			t.Fatal(err)
		}
		if r.Logs != nil {
			return *r.Logs
		}
	}
}

type logsAnswer struct {
	body string
	err  error
}

// askLogs asks for node's logs in the background; the answer is the whole body or the error.
func askLogs(c *client.Client, node string, q client.LogsQuery) <-chan logsAnswer {
	out := make(chan logsAnswer, 1)
	go func() {
		rc, err := c.NodeLogs(context.Background(), node, q)
		if err != nil {
			out <- logsAnswer{err: err}
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		out <- logsAnswer{string(b), err}
	}()
	return out
}

// follow is an operator following node's logs, answered by a raw agent's upload.
type follow struct {
	t        *testing.T
	body     io.ReadCloser // what the operator reads
	agent    *io.PipeWriter
	uploaded <-chan error
}

// startFollow follows node's logs until ctx ends; the agent on st answers, and its first line
// has reached the operator.
func startFollow(t *testing.T, ctx context.Context, h *harness, node string, st *client.Stream, ac *client.Client, sess string) *follow {
	t.Helper()
	rc := make(chan io.ReadCloser, 1)
	go func() {
		b, err := h.admin.NodeLogs(ctx, node, client.LogsQuery{App: "hello", Tail: 1, Follow: true})
		if err != nil {
			t.Error(err)
		}
		rc <- b
	}()
	req := logsAsked(t, st)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	uploaded := make(chan error, 1)
	go func() {
		uploaded <- ac.UploadLogs(context.Background(), sess, req.ID, "", func() io.ReadCloser { return pr })
	}()
	f := &follow{t: t, agent: pw, uploaded: uploaded}
	if f.body = <-rc; f.body == nil {
		t.FailNow()
	}
	f.line("first")
	return f
}

// line has the agent send s and a newline, and checks that the operator reads them.
func (f *follow) line(s string) {
	f.t.Helper()
	go f.agent.Write([]byte(s + "\n"))
	buf := make([]byte, len(s)+1)
	if _, err := io.ReadFull(f.body, buf); err != nil || string(buf) != s+"\n" {
		f.t.Fatalf("followed: %q %v", buf, err)
	}
}

func body(s string) func() io.ReadCloser {
	return func() io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
}

// The operator's request reaches the node's stream as a frame; the agent's upload, for that
// request and from that node only, comes back as the answer; its refusal as the error; an
// agent that does not answer, a down node, an unknown app or a bad query are clear errors.
func TestLogsThroughTheStream(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour})
	ctx := context.Background()
	h.site("ams", 1)
	ac, sess, st := logsAgent(t, h, "n1")
	other, otherSess, _ := logsAgent(t, h, "n2")

	since := lastEventID(t, h.admin)
	got := askLogs(h.admin, "n1", client.LogsQuery{App: "hello", Process: "web", Tail: 5})
	req := logsAsked(t, st)
	if req.App != "hello" || req.Process != "web" || req.Tail != 5 || req.Follow || req.Validate() != nil {
		t.Fatalf("request passed to the agent: %+v", req)
	}
	e := h.waitEvent(since, api.EventNodeLogsRequested, "n1")
	var p api.NodeLogsRequested
	if e.Decode(&p); p.ID != req.ID || p.Replica == "" || !strings.HasPrefix(e.Actor, "token:") {
		t.Fatalf("event: %+v %+v", e, p)
	}
	// Another node may not answer it, whatever its session; refused before its body, which may
	// never end (a follow's), is read.
	endless := func() io.ReadCloser { pr, _ := io.Pipe(); return pr }
	if err := other.UploadLogs(ctx, otherSess, req.ID, "", endless); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("another node's upload: %v", err)
	}
	if err := ac.UploadLogs(ctx, sess, req.ID, "", body("line 1\nline 2\n")); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a.err != nil || a.body != "line 1\nline 2\n" {
		t.Fatalf("logs: %q %v", a.body, a.err)
	}
	// Answered once: the id is spent.
	if err := ac.UploadLogs(ctx, sess, req.ID, "", body("again\n")); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("a second upload: %v", err)
	}

	// The agent's refusal is the operator's error.
	got = askLogs(h.admin, "n1", client.LogsQuery{App: "hello", Process: "nope", Tail: 5})
	req = logsAsked(t, st)
	if err := ac.UploadLogs(ctx, sess, req.ID, "app hello has no process nope on node n1 (it has: web)", nil); err != nil {
		t.Fatal(err)
	}
	if a := <-got; client.StatusOf(a.err) != http.StatusNotFound || !strings.Contains(a.err.Error(), "no process nope") {
		t.Fatalf("refusal: %q %v", a.body, a.err)
	}

	// Following: what the agent sends reaches the operator as it comes, and the upload ends
	// when the operator leaves.
	fctx, cancel := context.WithCancel(ctx)
	f := startFollow(t, fctx, h, "n1", st, ac, sess)
	f.line("second")
	cancel()
	f.body.Close()
	if err := <-f.uploaded; err != nil {
		t.Fatalf("the upload after the operator left: %v", err)
	}

	// Errors the operator sees at once.
	for _, c := range []struct {
		node string
		q    client.LogsQuery
		code int
		msg  string
	}{
		{"n1", client.LogsQuery{App: "nope", Tail: 1}, http.StatusNotFound, "node n1 reports no app nope (it has: hello)"},
		{"n9", client.LogsQuery{App: "hello", Tail: 1}, http.StatusNotFound, `node "n9" not found`},
		{"n1", client.LogsQuery{App: "hello", Tail: api.MaxLogsTail + 1}, http.StatusBadRequest, "bad tail"},
		{"n1", client.LogsQuery{App: "../x", Tail: 1}, http.StatusBadRequest, "app name"},
	} {
		if _, err := h.admin.NodeLogs(ctx, c.node, c.q); client.StatusOf(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %+v: %v, want %d %q", c.node, c.q, err, c.code, c.msg)
		}
	}

	// An agent that does not answer: the operator hears so after LogsAnswerWithin.
	pending := clk.Pending()
	got = askLogs(h.admin, "n2", client.LogsQuery{App: "hello", Tail: 1})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := clk.WaitPending(wctx, pending+1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(api.LogsAnswerWithin)
	if a := <-got; client.StatusOf(a.err) != http.StatusGatewayTimeout || !strings.Contains(a.err.Error(), "did not answer") {
		t.Fatalf("no answer: %q %v", a.body, a.err)
	}

	// A down node is refused at once.
	since = lastEventID(t, h.admin)
	clk.Advance(3 * time.Hour)
	h.srv.Sweep(ctx)
	h.waitEvent(since, api.EventNodeDown, "n2")
	if _, err := h.admin.NodeLogs(ctx, "n2", client.LogsQuery{App: "hello", Tail: 1}); client.StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "node n2 is down") {
		t.Fatalf("down node: %v", err)
	}
}

func FuzzParseLogsQuery(f *testing.F) {
	for _, s := range []string{"app=hello", "app=hello&process=web&tail=5&follow=true", "app=hello&tail=-1", "app=hello&app=x",
		"app=hello&tail=99999999999999999999", "app=hello&follow=maybe", "x=1", "app=%00", "app=hello&tail=0&follow=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := parseLogsQuery(q)
		if err != nil {
			return
		}
		req.ID = strings.Repeat("ab", 16)
		if err := req.Validate(); err != nil {
			t.Fatalf("%q parsed into an invalid request %+v: %v", raw, req, err)
		}
		if req.Tail < 0 || req.Tail > api.MaxLogsTail || req.App == "" {
			t.Fatalf("%q: out of bounds: %+v", raw, req)
		}
	})
}

// A follow ends after api.MaxLogsFollow on the server's clock, saying so, and the agent's
// upload with it.
func TestLogsFollowEndsAfterItsBound(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.site("ams", 1)
	ac, sess, st := logsAgent(t, h, "n1")
	pending := clk.Pending()
	f := startFollow(t, ctx, h, "n1", st, ac, sess)
	defer f.body.Close()
	// The wait for the agent is over once its first line is through; the upload's bound waits.
	if err := clk.WaitPending(ctx, pending+1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(api.MaxLogsFollow)
	if rest, err := io.ReadAll(f.body); err != nil || string(rest) != "\nferry: the log stream ended after 1h0m0s; run ferry logs again to go on\n" {
		t.Fatalf("after the bound: %q %v", rest, err)
	}
	if err := <-f.uploaded; err != nil {
		t.Fatalf("the upload after the bound: %v", err)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// An upload may carry api.LogsBurst bytes, and api.LogsRate more each second.
func TestLogsBudget(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	var why string
	b := &budgetReader{r: zeros{}, clk: clk, start: clk.Now(), cut: func(w string) { why = w }}
	if _, err := io.CopyN(io.Discard, b, api.LogsBurst); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := io.CopyN(io.Discard, b, api.LogsRate); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 1)); err == nil || !strings.Contains(why, "more than 512 KiB/s") {
		t.Fatalf("past the budget: %v, cut %q", err, why)
	}
}
