package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// An operator's `ferry logs` reaches the agent as a SyncReply carrying an api.LogsRequest; the
// agent answers with one upload to the server (client.UploadLogs): the processes' tails, then,
// following, what they write afterwards, read from their log files every followEvery. The
// agent opens nothing on its side: the upload is a request of its own, like its others.

// followEvery is how often a follow looks for new output.
const followEvery = 250 * time.Millisecond

// followChunk bounds what one look reads, of all the processes together: half the rate a
// server takes (api.LogsRate), so that a follow never passes it. A process that writes faster
// is followed late, and what rotation drops before the follow reads it is not shown.
const followChunk = api.LogsRate / 2 * int64(followEvery) / int64(time.Second)

// maxLogUploads bounds the uploads an agent runs at once.
const maxLogUploads = 8

// maxPartialLine bounds a line held back until its end comes, when lines are prefixed.
const maxPartialLine = 16 << 10

// logSource is one process's log as a logs request reads it.
type logSource struct {
	name string
	path string // the current log file
	tail func(n int) ([]byte, error)
	off  int64  // how far the follow has read path
	part []byte // the start of a line whose end has not come yet (prefixed output only)
}

// serveLogs answers a logs request: the upload, or the agent's one-line refusal.
func (a *Agent) serveLogs(ctx context.Context, req api.LogsRequest) {
	busy := a.logUploads.Add(1) > maxLogUploads
	defer a.logUploads.Add(-1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the follows of attempts that went to another replica
	srcs, refusal := a.logSources(req)
	if busy {
		srcs, refusal = nil, fmt.Sprintf("node %s sends %d logs at once already; end one (a --follow) and ask again", a.Name(), maxLogUploads)
	}
	a.log.Info("sending logs", "app", req.App, "process", req.Process, "tail", req.Tail, "follow", req.Follow, "request", req.ID)
	err := a.api.UploadLogs(ctx, a.sessionToken(), req.ID, refusal, func() io.ReadCloser {
		pr, pw := io.Pipe()
		ls := logStream{clk: a.clk, req: req, prefix: len(srcs) > 1, srcs: slices.Clone(srcs)}
		go func() { pw.CloseWithError(ls.run(ctx, pw)) }()
		return pr
	})
	if err != nil {
		a.log.Warn("logs sent in part or not at all", "app", req.App, "request", req.ID, "err", err)
		return
	}
	a.log.Info("logs sent", "app", req.App, "request", req.ID)
}

// logSources finds the logs a request asks for, or says in one line why it cannot.
func (a *Agent) logSources(req api.LogsRequest) ([]logSource, string) {
	if err := req.Validate(); err != nil {
		return nil, err.Error()
	}
	a.runMu.Lock()
	r := a.runs[req.App]
	var names []string
	if r != nil && r.cur != nil {
		for _, p := range r.cur.m.Processes {
			names = append(names, p.Name)
		}
	}
	a.runMu.Unlock()
	if r == nil {
		return nil, fmt.Sprintf("app %s does not run on node %s", req.App, a.Name())
	}
	if len(names) == 0 { // stopped, say: the supervisor still knows its processes
		for _, st := range r.sup.List() {
			names = append(names, st.Name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Sprintf("app %s has no processes on node %s", req.App, a.Name())
	}
	if req.Process != "" {
		if !slices.Contains(names, req.Process) {
			return nil, fmt.Sprintf("app %s has no process %s on node %s (it has: %s)", req.App, req.Process, a.Name(), strings.Join(names, ", "))
		}
		names = []string{req.Process}
	}
	var srcs []logSource
	for _, n := range names {
		path, err := r.sup.LogFile(n)
		if err != nil {
			return nil, err.Error()
		}
		srcs = append(srcs, logSource{name: n, path: path, tail: func(lines int) ([]byte, error) { return r.sup.Tail(n, lines) }})
	}
	return srcs, ""
}

// logStream writes one upload's logs.
type logStream struct {
	clk    clock.Clock
	req    api.LogsRequest
	prefix bool // lines start with their process's name
	srcs   []logSource
}

// run writes the tails, then with Follow what the processes write afterwards, until ctx ends,
// a write fails (the server ended the upload) or the follow has lasted api.MaxLogsFollow.
func (ls *logStream) run(ctx context.Context, w io.Writer) error {
	for i := range ls.srcs {
		// Where the follow starts, taken before the tail: a line written in between may come
		// twice, but none is lost.
		ls.srcs[i].off = fileSize(ls.srcs[i].path)
	}
	if ls.req.Tail > 0 {
		per := api.MaxLogsTailBytes / len(ls.srcs)
		for i := range ls.srcs {
			s := &ls.srcs[i]
			b, err := s.tail(ls.req.Tail)
			if err != nil {
				return err
			}
			if len(b) > per {
				b = b[len(b)-per:]
				if j := bytes.IndexByte(b, '\n'); j >= 0 {
					b = b[j+1:]
				}
			}
			if len(b) > 0 && b[len(b)-1] != '\n' && (ls.prefix || ls.req.Follow) {
				b = append(b, '\n')
			}
			if err := ls.write(w, s, b); err != nil {
				return err
			}
		}
	}
	if !ls.req.Follow {
		return nil
	}
	start := ls.clk.Now()
	chunk := max(4<<10, followChunk/int64(len(ls.srcs)))
	for {
		t := ls.clk.NewTimer(followEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
		if ls.clk.Now().Sub(start) >= api.MaxLogsFollow {
			return nil
		}
		for i := range ls.srcs {
			s := &ls.srcs[i]
			b, err := s.readNew(chunk)
			if err != nil {
				return err
			}
			if err := ls.write(w, s, b); err != nil {
				return err
			}
		}
	}
}

// write writes what s's process wrote, each whole line prefixed with its name when ls prefixes;
// the start of a line whose end has not come waits for it.
func (ls *logStream) write(w io.Writer, s *logSource, b []byte) error {
	if !ls.prefix {
		if len(b) == 0 {
			return nil
		}
		_, err := w.Write(b)
		return err
	}
	b = append(s.part, b...)
	s.part = nil
	var out []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) <= maxPartialLine {
				s.part = bytes.Clone(b)
				break
			}
			i = len(b) - 1 // a line this long goes out in pieces
		}
		out = append(out, s.name...)
		out = append(out, " | "...)
		out = append(out, b[:i+1]...)
		if b[i] != '\n' {
			out = append(out, '\n')
		}
		b = b[i+1:]
	}
	if len(out) == 0 {
		return nil
	}
	_, err := w.Write(out)
	return err
}

// readNew reads at most limit bytes that s's process wrote since the last read. Rotation
// truncates the file in place (copy-truncate): one shorter than where the follow read is read
// again from its start.
func (s *logSource) readNew(limit int64) ([]byte, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.off = 0
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < s.off {
		s.off = 0
	}
	n := min(fi.Size()-s.off, limit)
	if n <= 0 {
		return nil, nil
	}
	b := make([]byte, n)
	got, err := f.ReadAt(b, s.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	s.off += int64(got)
	return b[:got], nil
}

// fileSize is the size of the file at path, 0 when there is none.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
