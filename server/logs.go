package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// Reading a node's logs (api/logs.go tells the whole walk). The replica the operator asks
// waits for the agent's upload in memory, so the agent must upload to that replica: it tries
// the addresses it knows, and the others answer 404 at once, before taking any of the body.

// logRequests are the logs requests this replica waits on, by id. The zero value is ready.
type logRequests struct {
	mu      sync.Mutex
	pending map[string]*logRequest
}

// logRequest is one operator's request waiting for, then reading, the agent's upload.
type logRequest struct {
	node    string
	arrived chan *logUpload // takes the upload, once
	gone    <-chan struct{} // closed when the operator's request has ended
	// bound gives the writes to the operator a deadline: the last words of an upload cut short
	// go out, and a client that stopped reading cannot hold the request open.
	bound func()
}

// logUpload is an agent's upload handed to the operator's request, which reads it and closes
// done when it is through with it: the upload's handler returns only then.
type logUpload struct {
	body    io.Reader
	refusal string // the agent's one-line error, when it refused
	done    chan struct{}

	mu  sync.Mutex
	cut string // why the upload's handler cut the body short, if it did
}

func (u *logUpload) cutShort(why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cut == "" {
		u.cut = why
	}
}

func (u *logUpload) cutReason() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cut
}

// add registers a request for node's logs under a new id, until remove.
func (l *logRequests) add(node string, gone <-chan struct{}, bound func()) (string, *logRequest) {
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	lr := &logRequest{node: node, arrived: make(chan *logUpload), gone: gone, bound: bound}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[string]*logRequest{}
	}
	l.pending[id] = lr
	return id, lr
}

func (l *logRequests) remove(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, id)
}

// claim takes the request id for node's upload: once, and only for the node it asked.
func (l *logRequests) claim(id, node string) (*logRequest, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lr, ok := l.pending[id]
	if !ok || lr.node != node {
		return nil, false
	}
	delete(l.pending, id)
	return lr, true
}

// parseLogsQuery reads the query of GET /v1/nodes/{name}/logs into a request (without its id).
func parseLogsQuery(q url.Values) (api.LogsRequest, error) {
	for k, v := range q {
		switch k {
		case "app", "process", "tail", "follow":
			if len(v) != 1 {
				return api.LogsRequest{}, errorf(http.StatusBadRequest, "give %s once", k)
			}
		default:
			return api.LogsRequest{}, errorf(http.StatusBadRequest, "unknown parameter %q: want app, process, tail, follow", k)
		}
	}
	req := api.LogsRequest{App: q.Get("app"), Process: q.Get("process"), Tail: api.DefaultLogsTail}
	if req.App == "" {
		return req, errorf(http.StatusBadRequest, "missing app: ask for /v1/nodes/NODE/logs?app=APP")
	}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > api.MaxLogsTail {
			return req, errorf(http.StatusBadRequest, "bad tail %q: want 0 to %d lines", v, api.MaxLogsTail)
		}
		req.Tail = n
	}
	if v := q.Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			return req, errorf(http.StatusBadRequest, "bad follow %q: want true or false", v)
		}
		req.Follow = f
	}
	req.ID = "00000000000000000000000000000000" // checked with the rest; the real one comes later
	if err := req.Validate(); err != nil {
		return req, errorf(http.StatusBadRequest, "%v", err)
	}
	req.ID = ""
	return req, nil
}

// nodeLogs serves GET /v1/nodes/{name}/logs: it records the request, waits for the agent's
// upload and pipes it into the response as plain text.
func (s *Server) nodeLogs(w http.ResponseWriter, r *http.Request) error {
	req, err := parseLogsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	return s.streamLogs(w, r, r.PathValue("name"), req)
}

// webLogTail is how many lines of an app's log the web interface shows.
const webLogTail = 200

// webLogs serves the web interface's log tail of an app on a node, as `ferry logs NODE APP
// --tail 200` does, in plain text; the web interface lets only admins ask.
func (s *Server) webLogs(w http.ResponseWriter, r *http.Request, node, app string) {
	req, err := parseLogsQuery(url.Values{"app": {app}, "tail": {strconv.Itoa(webLogTail)}})
	if err == nil {
		err = s.streamLogs(w, r, node, req)
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// streamLogs asks node's agent for the logs req names and passes them on to w as they come.
func (s *Server) streamLogs(w http.ResponseWriter, r *http.Request, node string, req api.LogsRequest) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return errorf(http.StatusInternalServerError, "streaming unsupported")
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	id, lr := s.logs.add(node, ctx.Done(), func() { rc.SetWriteDeadline(time.Now().Add(cutWriteWait)) })
	defer s.logs.remove(id)
	req.ID = id
	if _, err := s.inventory.RequestLogs(ctx, node, api.NodeLogsRequested{LogsRequest: req, Replica: s.replica.id}); err != nil {
		return err
	}
	// The operator's request may read for up to MaxLogsFollow; the upload's handler bounds it.
	rc.SetReadDeadline(time.Time{})
	t := s.clk.NewTimer(api.LogsAnswerWithin)
	var up *logUpload
	select {
	case up = <-lr.arrived:
		t.Stop()
	case <-t.C():
		return errorf(http.StatusGatewayTimeout, "node %s did not answer within %s: its agent may be disconnected or too old to send logs; see ferry node show %s", node, api.LogsAnswerWithin, node)
	case <-ctx.Done():
		t.Stop()
		return nil
	}
	defer close(up.done)
	if up.refusal != "" {
		return errorf(http.StatusNotFound, "%s", up.refusal)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
			fl.Flush()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if why := up.cutReason(); why != "" {
				fmt.Fprintf(w, "\nferry: %s\n", why)
			}
			return nil
		}
	}
}

// agentLogs serves POST /v1/agent/logs/{id}: the agent's answer to a logs request of this
// replica's, for its own node only. It hands the body to the operator's request and returns when
// that is through with it; it cuts the body short when the operator leaves, when the upload has
// lasted api.MaxLogsFollow or when it carries more than api.LogsBurst plus api.LogsRate a
// second.
func (s *Server) agentLogs(w http.ResponseWriter, r *http.Request) error {
	node := r.Context().Value(ctxNode).(string)
	// An upload's body may never end (a follow): net/http must not read what is left of it
	// before answering, as it does on a connection it keeps, or a replica's 404 would wait for
	// it. The connection carries this one upload.
	w.Header().Set("Connection", "close")
	lr, ok := s.logs.claim(r.PathValue("id"), node)
	if !ok {
		return errorf(http.StatusNotFound, "no logs request %q waits here for node %s", r.PathValue("id"), node)
	}
	rc := http.NewResponseController(w)
	up := &logUpload{done: make(chan struct{})}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		var e api.Error
		if err := decode(w, r, &e); err != nil {
			return err
		}
		up.refusal = e.Error
		if up.refusal == "" {
			up.refusal = "the agent refused without saying why"
		}
		if len(up.refusal) > 1024 {
			up.refusal = up.refusal[:1024]
		}
	} else {
		rc.SetReadDeadline(time.Time{}) // the bounds below replace the server's read timeout
		up.body = &budgetReader{r: r.Body, clk: s.clk, start: s.clk.Now(), cut: up.cutShort}
	}
	select {
	case lr.arrived <- up:
	case <-lr.gone:
		return errorf(http.StatusGone, "the operator stopped waiting for these logs")
	}
	if up.body == nil {
		<-up.done
		writeJSON(w, http.StatusOK, struct{}{})
		return nil
	}
	// Whatever ends the upload early makes the operator's request's blocked read fail at once,
	// and a write that waits on the operator fail soon.
	cut := func(why string) {
		up.cutShort(why)
		lr.bound()
		rc.SetReadDeadline(time.Now())
	}
	t := s.clk.NewTimer(api.MaxLogsFollow)
	defer t.Stop()
	select {
	case <-up.done:
	case <-lr.gone:
		cut("the operator left")
		<-up.done
	case <-t.C():
		cut(fmt.Sprintf("the log stream ended after %s; run ferry logs again to go on", api.MaxLogsFollow))
		<-up.done
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// cutWriteWait is how long the operator's request may still write once its upload is cut.
const cutWriteWait = 10 * time.Second

// budgetReader reads an upload while it stays within api.LogsBurst bytes plus api.LogsRate a
// second since start; past that it fails, having called cut with why.
type budgetReader struct {
	r     io.Reader
	clk   clock.Clock
	start time.Time
	read  int64
	cut   func(why string)
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if allowed := logsBudget(b.clk.Now().Sub(b.start)); b.read > allowed {
		why := fmt.Sprintf("the node sent more than %d KiB/s of logs; the stream was ended", api.LogsRate>>10)
		b.cut(why)
		return n, errors.New(why)
	}
	return n, err
}

// logsBudget is what an upload may have carried after elapsed.
func logsBudget(elapsed time.Duration) int64 {
	return api.LogsBurst + int64(elapsed.Seconds()*api.LogsRate)
}

// passLogsRequest hands a logs request to the node's agent when this replica holds its stream.
func (s *Server) passLogsRequest(e api.Event) {
	var p api.NodeLogsRequested
	if e.Decode(&p) != nil || p.Validate() != nil {
		return
	}
	if st := s.hub.stream(e.Subject); st != nil {
		req := p.LogsRequest
		go func() {
			if err := st.send(api.SyncReply{Logs: &req}); err != nil {
				s.log.Debug("pass a logs request to the agent", "node", e.Subject, "err", err)
			}
		}()
	}
}

// stream returns the node's open stream on this replica, nil when there is none.
func (h *hub) stream(name string) *stream {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if n, ok := h.nodes[name]; ok {
		return n.stream
	}
	return nil
}
