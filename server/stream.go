package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// Agent protocol 2: instead of one held HTTP request per heartbeat interval, an agent upgrades
// one connection to a stream of newline-delimited JSON frames. It sends an api.Sync frame every
// interval (and when it has a new report); the server answers each with an api.SyncReply and
// pushes a reply of its own, carrying the desired state, the moment that state changes. A held
// connection costs one goroutine and a small read buffer instead of net/http's per-request
// machinery, and a heartbeat costs a frame instead of a request.

// maxFrame bounds one frame from an agent (facts and app reports included).
const maxFrame = maxBody

// stream is one agent's open stream. Writes come from the read loop (answers) and from
// whoever changes the node's desired state (pushes), so they are serialized here.
type stream struct {
	conn     net.Conn
	mu       sync.Mutex
	sent     int64     // newest generation written with its desired state
	answered time.Time // when the last answer was written, on the server's clock
}

// send writes reply unless it carries a desired state no newer than one already sent.
func (st *stream) send(reply api.SyncReply) error { return st.answer(reply, time.Time{}) }

// answer is send of an answer to a frame, at the server's time at.
func (st *stream) answer(reply api.SyncReply, at time.Time) error {
	b, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if reply.Desired != nil {
		if reply.Desired.Generation <= st.sent {
			reply.Desired = nil
			if b, err = json.Marshal(reply); err != nil {
				return err
			}
		} else {
			st.sent = reply.Desired.Generation
		}
	}
	// A stuck agent must not hold up a push to everyone else.
	st.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = st.conn.Write(append(b, '\n'))
	if err == nil && at.After(st.answered) {
		st.answered = at
	}
	return err
}

// answeredSince reports whether an answer was written to the stream after t.
func (st *stream) answeredSince(t time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.answered.After(t)
}

// end makes the stream's reader stop: its next read sees the end of the stream, whether the
// poller's worker or the stream's own goroutine reads it, and the reader then closes it.
func (st *stream) end() {
	c := st.conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cr, ok := c.(interface{ CloseRead() error }); ok && cr.CloseRead() == nil {
		return
	}
	st.conn.Close()
}

// push sends a node its new desired state, in the background: the caller is changing many nodes.
func (st *stream) push(d api.Desired, interval time.Duration) {
	go st.send(api.SyncReply{Generation: d.Generation, Desired: &d, HeartbeatInterval: api.Duration(interval)})
}

func (s *Server) agentStream(w http.ResponseWriter, r *http.Request) error {
	node := r.Context().Value(ctxNode).(string)
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.StreamUpgrade) {
		return errorf(http.StatusBadRequest, "send Connection: Upgrade and Upgrade: %s", api.StreamUpgrade)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+api.StreamUpgrade+"\r\n\r\n"); err != nil {
		conn.Close()
		return nil
	}
	// Bytes the client sent after its request are in net/http's buffer: they are the stream's
	// first.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = bytes.Clone(b)
	}
	// Opening a stream is a sign of life, counted before the stream is attached: the sweep
	// must not take the node for silent and end the stream it has just opened.
	back, _ := s.det.Heartbeat(node, s.clk.Now())
	st := &stream{conn: conn}
	if !s.hub.attach(node, st) {
		conn.Close()
		return nil
	}
	s.replica.open(node)
	// The session was checked to open the stream; frames only need its expiry checked.
	_, _, expires, _ := s.session(bearer(r))
	as := &agentStream{
		// What the stream records is the node's doing, from the address it connected from.
		ctx:     store.WithActor(s.serveCtx, store.ActorFrom(r.Context())),
		node:    node,
		expires: expires,
		proto:   protocolOf(r),
		st:      st,
		frames:  framer{limit: maxFrame},
	}
	s.streams.Add(1)
	s.metrics.agentConnections.Inc()
	if back {
		s.setStatus(as.ctx, node, api.StatusUp)
	}
	if s.serveCtx.Err() != nil {
		st.end() // Serve is ending streams, and may have done so before this one was attached
	}
	// The stream goes on after this handler returns, so that net/http's buffers and request
	// state for the connection can go.
	if as.pc = takeOver(conn); as.pc != nil && s.poller != nil {
		s.workers.submit(func(buf []byte) {
			if len(early) > 0 && !s.feed(as, early) {
				s.finish(as)
				return
			}
			s.pollStream(as, buf)
		})
		return nil
	}
	go func() {
		defer s.finish(as)
		s.readStream(as, early)
	}()
	return nil
}

// agentStream is what reading one agent's stream needs.
type agentStream struct {
	ctx     context.Context
	node    string
	expires time.Time
	proto   int
	st      *stream
	frames  framer       // cuts what the agent sends into frames
	pc      *pollConn    // the connection the poller watches, if it does
	id      uint64       // the stream's registration with the poller, once it has one
	reading atomic.Int32 // idle, reading or again, while the poller watches it
}

// finish ends a stream once its reader is done with it.
func (s *Server) finish(as *agentStream) {
	if as.id != 0 {
		s.poller.remove(as)
	}
	as.st.conn.Close()
	if s.hub.detach(as.node, as.st) {
		s.gaveUp(as.node)
	}
	s.metrics.agentConnections.Dec()
	s.streams.Done()
}

// pollStream runs on a worker when the poller found as readable (and once when the stream
// opens): it reads and handles what has come, until nothing more has.
func (s *Server) pollStream(as *agentStream, buf []byte) {
	for {
		switch s.readFrames(as, buf) {
		case readEnd:
			s.finish(as)
			return
		case readAgain:
			go s.pollReady(as) // after the other streams' turn
			return
		}
		if as.id == 0 {
			if err := s.poller.add(as); err != nil {
				s.log.Error("watch agent stream", "node", as.node, "err", err)
				s.finish(as)
				return
			}
		}
		if !s.poller.finished(as) {
			return
		}
	}
}

// pollReady hands a readable stream to a worker.
func (s *Server) pollReady(as *agentStream) {
	s.workers.submit(func(buf []byte) { s.pollStream(as, buf) })
}

// readStream reads a stream that the poller does not watch, on the stream's own goroutine,
// until the stream breaks or the agent falls silent past the grace period; workers handle the
// frames.
func (s *Server) readStream(as *agentStream, early []byte) {
	var more bool
	if len(early) > 0 {
		if s.workers.run(func([]byte) { more = s.feed(as, early) }); !more {
			return
		}
	}
	buf := make([]byte, 512)
	for {
		as.st.conn.SetReadDeadline(time.Now().Add(s.cfg.HeartbeatGrace))
		n, err := as.st.conn.Read(buf)
		more = true
		if n > 0 {
			s.workers.run(func([]byte) { more = s.feed(as, buf[:n]) })
		}
		if err != nil {
			s.streamEnded(as, err)
			return
		}
		if !more {
			return
		}
	}
}

type readResult int

const (
	readWait  readResult = iota // nothing more can be read without waiting
	readAgain                   // more can be read, after the other streams' turn
	readEnd                     // the stream is over
)

// readsPerTurn bounds how many reads one stream gets before others have their turn at the
// workers.
const readsPerTurn = 16

// readFrames reads and handles what has come on a polled connection, without waiting: the
// connection has nothing more once a read says so, since TLS may have read ahead of the
// records it returned.
func (s *Server) readFrames(as *agentStream, buf []byte) readResult {
	for range readsPerTurn {
		n, err := as.st.conn.Read(buf)
		if n > 0 && !s.feed(as, buf[:n]) {
			return readEnd
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return readWait
		}
		if err != nil {
			s.streamEnded(as, err)
			return readEnd
		}
	}
	return readAgain
}

func (s *Server) streamEnded(as *agentStream, err error) {
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("agent stream ended", "node", as.node, "err", err)
	}
}

// feed hands each whole frame of what an agent sent to handleFrame; it reports whether the
// stream goes on.
func (s *Server) feed(as *agentStream, data []byte) bool {
	more := true
	if err := as.frames.cut(data, func(frame []byte) bool {
		more = s.handleFrame(as, frame)
		return more
	}); err != nil {
		s.refuse(as.st, err)
		return false
	}
	return more
}

// framer cuts a stream of bytes, as it comes, into newline-ended frames of at most limit bytes
// (newline excluded); the beginning of a frame waits in pending for its end.
type framer struct {
	pending []byte
	limit   int
}

// cut calls each with every whole frame in data, in order, until each returns false; a frame
// past the limit is errFrameTooLong, whether or not its end has come.
func (f *framer) cut(data []byte, each func(frame []byte) bool) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(f.pending)+len(data) > f.limit {
				return errFrameTooLong
			}
			f.pending = append(f.pending, data...)
			return nil
		}
		frame := data[:i]
		data = data[i+1:]
		if f.pending != nil {
			frame = append(f.pending, frame...)
			f.pending = nil
		}
		if len(frame) > f.limit {
			return errFrameTooLong
		}
		if !each(frame) {
			return nil
		}
	}
	return nil
}

var errFrameTooLong = errorf(http.StatusRequestEntityTooLarge, "frame longer than %d bytes", maxFrame)

// handleFrame records one frame of an agent's and answers it; it reports whether the stream
// goes on.
func (s *Server) handleFrame(as *agentStream, frame []byte) bool {
	if !s.clk.Now().Before(as.expires) {
		s.refuse(as.st, errBadSession)
		return false
	}
	var req api.Sync
	if err := decodeJSON(bytes.NewReader(frame), &req); err != nil {
		s.refuse(as.st, err)
		return false
	}
	if err := s.heartbeat(as.ctx, as.node, req, as.proto); err != nil {
		s.refuse(as.st, err)
		return false
	}
	desired, ok := s.hub.watch(as.node)
	if !ok {
		return false
	}
	now := s.clk.Now()
	if req.Sparse && req.Apps == nil && req.Facts == nil && desired.Generation == req.Generation &&
		as.st.answeredSince(now.Add(-s.cfg.HeartbeatInterval*3/2)) {
		return true // heard, and the agent heard from us lately enough
	}
	reply := api.SyncReply{Generation: desired.Generation, HeartbeatInterval: api.Duration(s.cfg.HeartbeatInterval)}
	if desired.Generation != req.Generation {
		reply.Desired = &desired
	}
	return as.st.answer(reply, now) == nil
}

// refuse ends a stream with an error frame the agent can log, in the shape of an API error.
func (s *Server) refuse(st *stream, err error) {
	e := api.Error{Error: "internal error; see the server log", Code: http.StatusInternalServerError}
	var he *httpError
	if errors.As(err, &he) {
		e.Error, e.Code = he.msg, he.code
		e.RetryAfter, _ = strconv.Atoi(he.retryAfter)
	} else {
		s.log.Error("agent stream failed", "err", err)
	}
	b, _ := json.Marshal(e)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.conn.SetWriteDeadline(time.Now().Add(time.Second))
	st.conn.Write(append(b, '\n'))
}
