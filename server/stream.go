package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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
	conn net.Conn
	mu   sync.Mutex
	sent int64 // newest generation written with its desired state
}

// send writes reply unless it carries a desired state no newer than one already sent.
func (st *stream) send(reply api.SyncReply) error {
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
	return err
}

// push sends a node its new desired state, in the background: the caller is changing many nodes.
func (st *stream) push(d api.Desired, interval time.Duration) {
	go st.send(api.SyncReply{Generation: d.Generation, Desired: &d, HeartbeatInterval: api.Duration(interval)})
}

func (s *Server) agentStream(w http.ResponseWriter, r *http.Request) error {
	node := r.Context().Value(ctxNode).(string)
	if protocolOf(r) < 2 {
		return errorf(http.StatusBadRequest, "streams need agent protocol 2 or later; use POST /v1/agent/sync")
	}
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
	// Bytes the client sent after its request are in net/http's buffer; read those first, then
	// the connection through a small buffer of our own.
	var in io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		in = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	st := &stream{conn: conn}
	if !s.hub.attach(node, st) {
		conn.Close()
		return nil
	}
	// The stream runs in a goroutine of its own so that this one, and with it net/http's
	// buffers and request state for the connection, can end.
	// The session was checked to open the stream; frames only need its expiry checked.
	_, _, expires, _ := s.session(bearer(r))
	proto := protocolOf(r)
	// What the stream records is the node's doing, from the address it connected from.
	ctx := store.WithActor(s.serveCtx, store.ActorFrom(r.Context()))
	s.streams.Add(1)
	go func() {
		defer s.streams.Done()
		defer conn.Close()
		defer s.hub.detach(node, st)
		s.metrics.agentConnections.Inc()
		defer s.metrics.agentConnections.Dec()
		s.serveStream(ctx, node, expires, proto, st, bufio.NewReaderSize(in, 512))
	}()
	return nil
}

// serveStream reads an agent's frames until the stream breaks, the agent falls silent past the
// grace period, its session expires or it is revoked.
func (s *Server) serveStream(ctx context.Context, node string, expires time.Time, proto int, st *stream, br *bufio.Reader) {
	stop := context.AfterFunc(ctx, func() { st.conn.Close() })
	defer stop()
	for {
		st.conn.SetReadDeadline(time.Now().Add(s.cfg.HeartbeatGrace))
		frame, err := readFrame(br, maxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("agent stream ended", "node", node, "err", err)
			}
			return
		}
		if !s.clk.Now().Before(expires) {
			s.refuse(st, errBadSession)
			return
		}
		var req api.Sync
		if err := decodeJSON(bytes.NewReader(frame), &req); err != nil {
			s.refuse(st, err)
			return
		}
		if err := s.heartbeat(ctx, node, req, proto); err != nil {
			s.refuse(st, err)
			return
		}
		desired, _, ok := s.hub.watch(node)
		if !ok {
			return
		}
		reply := api.SyncReply{Generation: desired.Generation, HeartbeatInterval: api.Duration(s.cfg.HeartbeatInterval)}
		if desired.Generation != req.Generation {
			reply.Desired = &desired
		}
		if err := st.send(reply); err != nil {
			return
		}
	}
}

// refuse ends a stream with an error frame the agent can log, in the shape of an API error.
func (s *Server) refuse(st *stream, err error) {
	msg, code := "internal error; see the server log", http.StatusInternalServerError
	var he *httpError
	if errors.As(err, &he) {
		msg, code = he.msg, he.code
	} else {
		s.log.Error("agent stream failed", "err", err)
	}
	b, _ := json.Marshal(api.Error{Error: msg, Code: code})
	st.mu.Lock()
	defer st.mu.Unlock()
	st.conn.SetWriteDeadline(time.Now().Add(time.Second))
	st.conn.Write(append(b, '\n'))
}

// readFrame reads one line of at most limit bytes, without its newline.
func readFrame(br *bufio.Reader, limit int) ([]byte, error) {
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if long == nil {
				return chunk[:len(chunk)-1], nil
			}
			return append(long, chunk[:len(chunk)-1]...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, chunk...)
			if len(long) > limit {
				return nil, fmt.Errorf("frame longer than %d bytes", limit)
			}
		default:
			return nil, err
		}
	}
}
