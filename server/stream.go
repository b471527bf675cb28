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
	opened   time.Time // on the server's clock
	mu       sync.Mutex
	sent     int64        // newest generation written with its desired state
	answered atomic.Int64 // when the last answer was written, on the server's clock (Unix ns)
	deadline time.Time    // the connection's write deadline, as last set under mu; zero: none
}

// setWriteDeadline sets the connection's write deadline; st.mu is held.
func (st *stream) setWriteDeadline(t time.Time) {
	st.deadline = t
	st.conn.SetWriteDeadline(t)
}

// shortenWriteDeadline brings the write deadline forward to t unless it is no later already
// (setting it costs more than reading a heartbeat); st.mu is held.
func (st *stream) shortenWriteDeadline(t time.Time) {
	if st.deadline.IsZero() || st.deadline.After(t) {
		st.setWriteDeadline(t)
	}
}

// send writes reply unless it carries a desired state no newer than one already sent.
func (st *stream) send(reply api.SyncReply) error { return st.answer(reply, time.Time{}) }

// answer is send of an answer to a frame, at the server's time at.
func (st *stream) answer(reply api.SyncReply, at time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	// A stuck agent must not hold up a push to everyone else.
	return st.writeLocked(reply, at, 10*time.Second)
}

// writeLocked is answer with st.mu held, waiting at most wait for the connection to take it.
func (st *stream) writeLocked(reply api.SyncReply, at time.Time, wait time.Duration) error {
	if reply.Desired != nil {
		if reply.Desired.Generation <= st.sent {
			reply.Desired = nil
		} else {
			st.sent = reply.Desired.Generation
		}
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	st.setWriteDeadline(time.Now().Add(wait))
	_, err = st.conn.Write(append(b, '\n'))
	if err == nil && !at.IsZero() && at.UnixNano() > st.answered.Load() {
		st.answered.Store(at.UnixNano())
	}
	return err
}

// answeredSince reports whether an answer was written to the stream after t. It takes no lock:
// the poller asks it while a writer may hold the stream.
func (st *stream) answeredSince(t time.Time) bool { return st.answered.Load() > t.UnixNano() }

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
	st := &stream{conn: conn, opened: s.clk.Now()}
	if !s.hub.attach(node, st) {
		conn.Close()
		return nil
	}
	s.replica.open(node)
	s.sendProbeOrders(node, st)
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
	s.streams.add(as)
	s.metrics.agentConnections.Inc()
	if back {
		s.nodeBack(as.ctx, node)
	}
	if s.serveCtx.Err() != nil {
		st.end() // Serve is ending streams, and may have done so before this one was attached
	}
	// The stream goes on after this handler returns, so that net/http's buffers and request
	// state for the connection can go.
	if as.pc = takeOver(conn); as.pc != nil && s.poller != nil {
		_, tlsConn := conn.(*tls.Conn)
		as.plain = !tlsConn
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
	plain   bool         // pc carries the frames themselves, not TLS records
	id      uint64       // the stream's registration with the poller, once it has one
	reading atomic.Int32 // idle, reading or again, while the poller watches it
}

// finish ends a stream once its reader is done with it.
func (s *Server) finish(as *agentStream) {
	if !s.streams.take(as) {
		return // finished already: Serve did, its reader having missed the end
	}
	if as.id != 0 {
		s.poller.remove(as)
	}
	as.st.conn.Close()
	if s.hub.detach(as.node, as.st) {
		s.gaveUp(as.node)
	}
	s.metrics.agentConnections.Dec()
	s.streams.release()
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

// pollQuick is the poller's own turn at a stream it found readable, before any worker's: it
// reads what has come and, when that is only heartbeats that quickFrame takes, handles them
// there and then, writing their answers too when that need not wait (tryAnswer). Handing a
// stream to a worker wakes a second thread for every heartbeat, which cost more than the
// heartbeat itself. Anything else (a report, a node coming back, an error) goes to a worker
// with the bytes read so far, and the worker carries on from there. buf is the poller's own.
func (s *Server) pollQuick(as *agentStream, buf []byte) {
	turn := s.readQuick(as, buf)
	if turn.done && !s.poller.finished(as) {
		return
	}
	rest, owed := bytes.Clone(turn.rest), turn.owed
	s.workers.submit(func(buf []byte) {
		if owed != nil && as.st.answer(owed.reply, owed.at) != nil {
			s.finish(as)
			return
		}
		if len(rest) > 0 && !s.feed(as, rest) {
			s.finish(as)
			return
		}
		s.pollStream(as, buf)
	})
}

// quickTurn is what the poller's turn at a stream leaves for a worker, unless done.
type quickTurn struct {
	done bool   // all that had come was handled
	rest []byte // the bytes from the first frame the poller left; the worker reads on after them
	owed *owed  // an answer the poller could not write at once, to write before rest
}

// owed is an answer due to a heartbeat that quickFrame took.
type owed struct {
	reply api.SyncReply
	at    time.Time
}

// quickWriteWait bounds how long the poller may wait on a write that TLS makes while it reads (an
// alert, or the answer to a key update): an agent that stops reading must not hold up the
// others' heartbeats.
const quickWriteWait = 100 * time.Millisecond

// readQuick reads as's connection without waiting and handles the whole frames that
// quickFrame takes, writing their answers when tryAnswer can. It stops at the first frame it
// cannot handle, or after one whose answer it could not write, leaving the rest to a worker:
// the worker must not be waited for here, since it may need the stream's lock that this holds.
func (s *Server) readQuick(as *agentStream, buf []byte) quickTurn {
	if as.frames.pending != nil {
		return quickTurn{} // a frame a worker began: the worker's framer has it
	}
	if !as.plain {
		// Every write to the stream holds its lock, so none is under way while the poller
		// holds it, and the short deadline binds only what TLS writes during this read; the
		// next writer sets its own.
		if !as.st.mu.TryLock() {
			return quickTurn{}
		}
		defer as.st.mu.Unlock()
		as.st.shortenWriteDeadline(time.Now().Add(quickWriteWait))
	}
	as.pc.newTurn()
	for range readsPerTurn {
		n, err := as.st.conn.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				return quickTurn{rest: data}
			}
			q, reply, at := s.quickFrame(as, data[:i])
			if q == notQuick {
				return quickTurn{rest: data}
			}
			data = data[i+1:]
			if q == answerDue {
				if wrote, err := s.tryAnswer(as, reply, at, !as.plain); err != nil {
					as.st.end()
					return quickTurn{} // the worker's read finds the stream ended
				} else if !wrote {
					return quickTurn{rest: data, owed: &owed{reply, at}}
				}
			}
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return quickTurn{done: true}
		case err != nil:
			return quickTurn{} // the worker's read meets it again and ends the stream
		}
	}
	return quickTurn{}
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
// records it returned (the read that says so costs no system call once one found the socket
// emptied: see pollConn.drained).
func (s *Server) readFrames(as *agentStream, buf []byte) readResult {
	as.pc.newTurn()
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
	switch q, reply, at := s.quickFrame(as, frame); q {
	case heard:
		return true
	case answerDue:
		return as.st.answer(reply, at) == nil
	}
	if !s.clk.Now().Before(as.expires) {
		s.refuse(as.st, errBadSession)
		return false
	}
	req, ok := plainHeartbeat(frame)
	if !ok {
		if err := decodeJSON(bytes.NewReader(frame), &req); err != nil {
			s.refuse(as.st, err)
			return false
		}
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
		as.st.answeredSince(now.Add(-api.SparseQuiet(s.cfg.HeartbeatInterval))) {
		return true // heard, and the agent heard from us lately enough
	}
	reply := api.SyncReply{Generation: desired.Generation, HeartbeatInterval: api.Duration(s.cfg.HeartbeatInterval)}
	if desired.Generation != req.Generation {
		reply.Desired = &desired
	}
	return as.st.answer(reply, now) == nil
}

// What quickFrame made of a frame.
type quick int

const (
	notQuick  quick = iota // handleFrame's to handle in full; nothing was changed
	heard                  // noted; nothing to write
	answerDue              // noted; the stream is due the answer quickFrame returned
)

// quickFrame handles a frame that asks for nothing but a note in memory, and perhaps a plain
// answer: a sparse heartbeat that carries nothing, at the current generation, from a node that
// is up. For any other frame it reports notQuick, having changed nothing, and handleFrame
// handles it in full. It neither waits nor writes, so the poller may call it.
func (s *Server) quickFrame(as *agentStream, frame []byte) (quick, api.SyncReply, time.Time) {
	req, ok := plainHeartbeat(frame)
	if !ok {
		return notQuick, api.SyncReply{}, time.Time{}
	}
	now := s.clk.Now()
	if !now.Before(as.expires) {
		return notQuick, api.SyncReply{}, time.Time{}
	}
	if gen, ok := s.hub.generation(as.node); !ok || gen != req.Generation {
		return notQuick, api.SyncReply{}, time.Time{}
	}
	if !s.det.HeartbeatUp(as.node, now) {
		return notQuick, api.SyncReply{}, time.Time{} // down or untracked: handleFrame records its return
	}
	s.metrics.heartbeats.Inc()
	if as.st.answeredSince(now.Add(-api.SparseQuiet(s.cfg.HeartbeatInterval))) {
		return heard, api.SyncReply{}, time.Time{}
	}
	return answerDue, api.SyncReply{Generation: req.Generation, HeartbeatInterval: api.Duration(s.cfg.HeartbeatInterval)}, now
}

// tryAnswer writes an answer quickFrame found due, from the poller, when it need not wait: the
// stream's lock is free (or the poller holds it already, reading TLS: locked) and the socket
// holds nothing unsent, so the few bytes go straight into an empty buffer. It reports whether
// it wrote; an error means the stream is broken.
func (s *Server) tryAnswer(as *agentStream, reply api.SyncReply, at time.Time, locked bool) (bool, error) {
	if !locked {
		if !as.st.mu.TryLock() {
			return false, nil
		}
		defer as.st.mu.Unlock()
	}
	if as.pc.unsent() != 0 {
		return false, nil
	}
	return true, as.st.writeLocked(reply, at, quickWriteWait)
}

// plainHeartbeat reads a sparse heartbeat that carries nothing, in the one form agents write it
// (`{"generation":N,"sparse":true}`), without the JSON decoder: it is nearly every frame, and
// decoding was a tenth of a heartbeat's cost. Any other frame, this form with a space in it
// included, is not ok and goes to the decoder; what this accepts, the decoder reads alike (a
// fuzz test holds them to it).
func plainHeartbeat(frame []byte) (api.Sync, bool) {
	const head, tail = `{"generation":`, `,"sparse":true}`
	if len(frame) > len(head)+20+len(tail) || !bytes.HasPrefix(frame, []byte(head)) || !bytes.HasSuffix(frame, []byte(tail)) {
		return api.Sync{}, false
	}
	num := frame[len(head) : len(frame)-len(tail)]
	digits := bytes.TrimPrefix(num, []byte("-"))
	// JSON numbers have no leading zeros and no plus sign; ParseInt would take both.
	if len(digits) == 0 || (digits[0] == '0' && len(digits) > 1) {
		return api.Sync{}, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return api.Sync{}, false
		}
	}
	gen, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return api.Sync{}, false
	}
	return api.Sync{Generation: gen, Sparse: true}, true
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
	st.setWriteDeadline(time.Now().Add(time.Second))
	st.conn.Write(append(b, '\n'))
}
