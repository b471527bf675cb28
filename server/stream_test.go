package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
)

// rawAgent enrolls name with a fresh key and returns an agent client and a way to open sessions.
func rawAgent(t *testing.T, h *harness, site, name string) (*client.Client, func() api.Session) {
	t.Helper()
	ctx := context.Background()
	ac := h.client("")
	req, priv := signed(t, h.enrollToken(site, 1), name)
	if _, err := ac.Enroll(ctx, req); err != nil {
		t.Fatal(err)
	}
	return ac, func() api.Session {
		t.Helper()
		ch, err := ac.Challenge(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage(name, ch.Nonce)))
		s, err := ac.Session(ctx, api.SessionRequest{Node: name, Nonce: ch.Nonce, Signature: sig})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// recv reads the next frame, failing the test if none comes within 10 s.
func recv(t *testing.T, st *client.Stream) (api.SyncReply, error) {
	t.Helper()
	type res struct {
		r   api.SyncReply
		err error
	}
	c := make(chan res, 1)
	go func() { r, err := st.Recv(); c <- res{r, err} }()
	select {
	case r := <-c:
		return r.r, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("no frame from the server")
		return api.SyncReply{}, nil
	}
}

// openStream opens a stream for a node, closed when the test ends.
func openStream(t *testing.T, ac *client.Client, token string) *client.Stream {
	t.Helper()
	st, err := ac.OpenStream(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Protocol 2: one stream per agent carries heartbeats and reports up, answers and pushes down.
func TestAgentStream(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour})
	ctx := context.Background()
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	st := openStream(t, ac, session().Token)
	apps := []api.NodeApp{{App: "hello", Version: "1.0.0"}}
	if err := st.Send(api.Sync{Facts: &api.Facts{Hostname: "n1", CPUs: 2}, Apps: &apps}); err != nil {
		t.Fatal(err)
	}
	r, err := recv(t, st)
	if err != nil || r.Desired == nil || r.Desired.Generation != 1 || time.Duration(r.HeartbeatInterval) != time.Hour {
		t.Fatalf("first answer: %+v %v", r, err)
	}
	if n, _ := h.admin.Node(ctx, "n1"); n.Facts.Protocol != 2 || n.Facts.CPUs != 2 || len(n.Apps) != 1 {
		t.Fatalf("node after the first frame: %+v", n)
	}
	// A label change is pushed without the agent asking.
	if _, err := h.admin.Label(ctx, "n1", api.LabelChange{Set: map[string]string{"zone": "b"}}); err != nil {
		t.Fatal(err)
	}
	r, err = recv(t, st)
	if err != nil || r.Desired == nil || r.Desired.Generation != 2 || r.Desired.Labels["zone"] != "b" {
		t.Fatalf("push: %+v %v", r, err)
	}
	// A heartbeat at the current generation is answered without the desired state.
	st.Send(api.Sync{Generation: 2})
	if r, err = recv(t, st); err != nil || r.Desired != nil || r.Generation != 2 {
		t.Fatalf("heartbeat answer: %+v %v", r, err)
	}

	// A malformed frame ends the stream with the reason.
	bad := []api.NodeApp{{App: "../etc"}}
	st.Send(api.Sync{Generation: 2, Apps: &bad})
	if _, err := recv(t, st); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "app name") {
		t.Fatalf("bad report: %v", err)
	}
	if _, err := recv(t, st); !errors.Is(err, io.EOF) {
		t.Fatalf("stream still open after a bad frame: %v", err)
	}
	if n, _ := h.admin.Node(ctx, "n1"); len(n.Apps) != 1 || n.Apps[0].App != "hello" {
		t.Fatalf("a refused report was stored: %+v", n.Apps)
	}

	// A second stream replaces the first; an expired session ends the stream; so does revocation.
	first, _ := ac.OpenStream(ctx, session().Token)
	second, err := ac.OpenStream(ctx, session().Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, first); err == nil {
		t.Fatal("the older stream stayed open")
	}
	clk.Advance(2 * time.Hour)
	second.Send(api.Sync{Generation: 2})
	if _, err := recv(t, second); client.StatusOf(err) != 401 {
		t.Fatalf("expired session: %v", err)
	}
	third, _ := ac.OpenStream(ctx, session().Token)
	if err := h.admin.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, third); err == nil {
		t.Fatal("a revoked node's stream stayed open")
	}

	// Protocol 1 is retired: its agents are told so, in the shape every version mismatch gets.
	v1, session1 := rawAgent(t, h, "ams", "n2")
	tok := session1().Token
	v1.Protocol = 1
	if _, err := v1.OpenStream(ctx, tok); client.StatusOf(err) != http.StatusUpgradeRequired || !strings.Contains(err.Error(), "speaks 2 to 2") {
		t.Fatalf("stream on protocol 1: %v", err)
	}
}

// streamPaths runs a stream test on both ways of reading streams: the poller (Linux), over TLS
// and plain HTTP, whose reads differ, and a goroutine per stream, which the server uses for
// connections it cannot poll.
func streamPaths(t *testing.T, cfg Config, test func(t *testing.T, h *harness)) {
	t.Run("poller", func(t *testing.T) { test(t, start(t, cfg)) })
	t.Run("poller-plain", func(t *testing.T) {
		plain := cfg
		plain.InsecureHTTP = true
		test(t, start(t, plain))
	})
	t.Run("goroutine", func(t *testing.T) {
		test(t, startOn(t, cfg, func(l net.Listener) net.Listener { return opaqueListener{l} }))
	})
}

// opaqueListener hides the type of the connections it accepts, so the server cannot poll them.
type opaqueListener struct{ net.Listener }

func (l opaqueListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

// rawStream opens an agent stream by hand, over TLS unless the server speaks plain HTTP, sending
// early right behind the upgrade request, in the same write.
func rawStream(t *testing.T, h *harness, token string, early string) (net.Conn, *bufio.Reader) {
	t.Helper()
	var conn net.Conn
	var err error
	if addr, ok := strings.CutPrefix(h.addr, "http://"); ok {
		conn, err = net.Dial("tcp", addr)
	} else {
		conn, err = tls.Dial("tcp", strings.TrimPrefix(h.addr, "https://"), h.http.Transport.(*http.Transport).TLSClientConfig)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /v1/agent/stream HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer " + token + "\r\n" +
		api.ProtocolHeader + ": 2\r\nConnection: Upgrade\r\nUpgrade: " + api.StreamUpgrade + "\r\n\r\n"
	if _, err := io.WriteString(conn, req+early); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // guards the test only
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn, br
}

// replies reads n answers and returns their generations; an error frame fails the test.
func replies(t *testing.T, br *bufio.Reader, n int) []int64 {
	t.Helper()
	var gens []int64
	for range n {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("after %d answers: %v", len(gens), err)
		}
		var r api.SyncReply
		if err := json.Unmarshal(line, &r); err != nil || r.Generation == 0 {
			t.Fatalf("answer %d: %s %v", len(gens), line, err)
		}
		gens = append(gens, r.Generation)
	}
	return gens
}

// Frames are cut where the agent's writes and TLS records cut them, not where they end: a frame
// behind the upgrade request, a frame in a hundred records, many frames in one record and many
// records in one read all get one answer per frame, in order.
func TestStreamFraming(t *testing.T) {
	streamPaths(t, Config{HeartbeatInterval: time.Hour}, func(t *testing.T, h *harness) {
		h.site("ams", 1)
		_, session := rawAgent(t, h, "ams", "n1")
		frame := `{"generation":1,"facts":{"hostname":"n1","cpus":4}}` + "\n"
		conn, br := rawStream(t, h, session().Token, frame)
		replies(t, br, 1)

		for i := range len(frame) { // one record per byte
			if _, err := io.WriteString(conn, frame[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		replies(t, br, 1)
		if _, err := io.WriteString(conn, strings.Repeat(frame, 40)); err != nil {
			t.Fatal(err)
		}
		replies(t, br, 40)
		for range 60 {
			if _, err := io.WriteString(conn, `{"generation":1}`+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		replies(t, br, 60)
		// Sparse heartbeats need no answer, having had one just now; a frame among them that
		// does, in the same read, is answered, and the heartbeats after it are still read.
		sparse := strings.Repeat(`{"generation":1,"sparse":true}`+"\n", 5)
		if _, err := io.WriteString(conn, sparse+`{"generation":1,"facts":{"hostname":"n1","cpus":8}}`+"\n"+sparse+`{"generation":1}`+"\n"); err != nil {
			t.Fatal(err)
		}
		replies(t, br, 2)
		if n, _ := h.admin.Node(context.Background(), "n1"); n.Facts.CPUs != 8 || n.Status != api.StatusUp {
			t.Fatalf("node after the frames: %+v", n)
		}

		// A frame may not grow past the bound, however it comes.
		long := `{"facts":{"hostname":"` + strings.Repeat("a", maxFrame)
		for len(long) > 0 {
			n := min(len(long), 64<<10)
			if _, err := io.WriteString(conn, long[:n]); err != nil {
				break // the server may close before all is written
			}
			long = long[n:]
		}
		line, err := br.ReadBytes('\n')
		var e api.Error
		if err != nil || json.Unmarshal(line, &e) != nil || e.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("overlong frame: %s %v", line, err)
		}
		if _, err := br.ReadBytes('\n'); err == nil {
			t.Fatal("the stream went on after an overlong frame")
		}
	})
}

// A stream whose agent falls silent past the grace period is ended when the node is marked
// down; streams still open when the server stops are ended, and it stops.
func TestStreamEnds(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	streamPaths(t, Config{Clock: clk, HeartbeatInterval: time.Minute}, func(t *testing.T, h *harness) {
		h.site("ams", 1)
		_, silent := rawAgent(t, h, "ams", "silent")
		_, open := rawAgent(t, h, "ams", "open")
		_, sbr := rawStream(t, h, silent().Token, `{"generation":1}`+"\n")
		oconn, obr := rawStream(t, h, open().Token, `{"generation":1}`+"\n")
		replies(t, sbr, 1)
		replies(t, obr, 1)
		clk.Advance(2 * time.Minute)
		io.WriteString(oconn, `{"generation":1}`+"\n")
		replies(t, obr, 1)
		// The sweep waits on the clock again (its wait is at most a second) before it moves on.
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := clk.WaitDue(wctx, time.Second); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute) // silent for 4 minutes, open for 2: the grace is 3
		h.waitEvent(0, "node.down", "silent")
		if _, err := sbr.ReadBytes('\n'); !errors.Is(err, io.EOF) {
			t.Fatalf("a silent agent's stream: %v", err)
		}
		h.stop()
		if _, err := obr.ReadBytes('\n'); !errors.Is(err, io.EOF) {
			t.Fatalf("a stream after the server stopped: %v", err)
		}
	})
}

// However the bytes are cut into reads, the framer yields the same frames as cutting them all
// at once, and refuses a frame past the limit, ended or not.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("{\"generation\":1}\n{}\n"), []byte{3, 7})
	f.Add([]byte("abc\ndefghijklmnop\nq"), []byte{1, 1, 1, 1, 1})
	f.Add([]byte("\n\n\n"), []byte{})
	f.Add([]byte("0123456789abcdefg"), []byte{16})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		const limit = 16
		fr := framer{limit: limit}
		var got [][]byte
		var err error
		rest := data
		for i := 0; len(rest) > 0 && err == nil; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i])+1)
			}
			err = fr.cut(rest[:n], func(frame []byte) bool {
				got = append(got, bytes.Clone(frame))
				return true
			})
			rest = rest[n:]
		}
		// The reference: every newline-ended line, up to the first too long (ended or not).
		var want [][]byte
		var wantErr error
		lines := bytes.Split(data, []byte("\n"))
		for i, line := range lines {
			if len(line) > limit {
				wantErr = errFrameTooLong
				break
			}
			if i < len(lines)-1 {
				want = append(want, line)
			}
		}
		if !errors.Is(err, wantErr) {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d: %q", len(got), len(want), got)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// The server learns of writes from the store's change feed, not from whoever wrote: a label
// change written to the store directly, as another replica would, is pushed to the node's
// stream, and a revocation written so ends it.
func TestFeedDrivesStreams(t *testing.T) {
	h := start(t, Config{HeartbeatInterval: time.Hour})
	ctx := context.Background()
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	st := openStream(t, ac, session().Token)
	st.Send(api.Sync{})
	r, err := recv(t, st)
	if err != nil || r.Desired == nil {
		t.Fatalf("first answer: %+v %v", r, err)
	}
	if _, _, err := h.srv.inventory.ChangeLabels(ctx, []string{"n1"}, map[string]string{"zone": "c"}, nil); err != nil {
		t.Fatal(err)
	}
	r, err = recv(t, st)
	if err != nil || r.Desired == nil || r.Desired.Generation <= 1 || r.Desired.Labels["zone"] != "c" {
		t.Fatalf("push after a write to the store: %+v %v", r, err)
	}
	if _, err := h.srv.inventory.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, st); err == nil {
		t.Fatal("the stream of a node revoked in the store stayed open")
	}
}

// The sweep marks many nodes down one after the other; a node that speaks again before its
// turn keeps its status up and its stream.
func TestLateSweepKeepsLiveNode(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Minute})
	ctx := context.Background()
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	st := openStream(t, ac, session().Token)
	st.Send(api.Sync{})
	if _, err := recv(t, st); err != nil {
		t.Fatal(err)
	}
	// The sweep's pass finds n1 silent, but n1 speaks before the pass records it.
	if got := h.srv.det.Sweep(clk.Now().Add(time.Hour)); len(got) != 1 || got[0] != "n1" {
		t.Fatalf("sweep found %v", got)
	}
	if back, _ := h.srv.det.Heartbeat("n1", clk.Now().Add(time.Hour)); !back {
		t.Fatal("the detector did not count n1 back")
	}
	h.srv.setStatus(ctx, "n1", api.StatusDown)
	if n, _ := h.admin.Node(ctx, "n1"); n.Status != api.StatusUp {
		t.Fatalf("a node that spoke again is %s", n.Status)
	}
	st.Send(api.Sync{Generation: 1})
	if _, err := recv(t, st); err != nil {
		t.Fatalf("the stream of a node that spoke again: %v", err)
	}
}

// A sparse heartbeat (plain, at the current generation) is answered only when the stream has had
// no answer for two intervals and a half; anything else is answered at once.
func TestSparseHeartbeats(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	streamPaths(t, Config{Clock: clk, HeartbeatInterval: 10 * time.Minute}, func(t *testing.T, h *harness) { sparseHeartbeats(t, h, clk) })
}

func sparseHeartbeats(t *testing.T, h *harness, clk *clock.Fake) {
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	st := openStream(t, ac, session().Token)
	st.Send(api.Sync{Sparse: true}) // an older generation: answered with the desired state
	if r, err := recv(t, st); err != nil || r.Desired == nil || r.Generation != 1 {
		t.Fatalf("first answer: %+v %v", r, err)
	}
	// Answered a moment ago: the sparse heartbeat gets none, so the next frame read is the push
	// of a label change made after it.
	st.Send(api.Sync{Generation: 1, Sparse: true})
	st.Send(api.Sync{Generation: 1}) // answered, so the sparse frame before it has been read
	if r, err := recv(t, st); err != nil || r.Desired != nil || r.Generation != 1 {
		t.Fatalf("answer to the frame after a sparse heartbeat: %+v %v", r, err)
	}
	if _, err := h.admin.Label(context.Background(), "n1", api.LabelChange{Set: map[string]string{"zone": "b"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := recv(t, st); err != nil || r.Desired == nil || r.Desired.Generation != 2 {
		t.Fatalf("after a sparse heartbeat and a label change, read %+v %v; want the push (the heartbeat was answered?)", r, err)
	}
	// Quiet for two intervals: still no answer. The frame after it is answered at once, so the
	// next answer read is the one to that frame.
	clk.Advance(20 * time.Minute)
	st.Send(api.Sync{Generation: 2, Sparse: true})
	st.Send(api.Sync{Generation: 2})
	if r, err := recv(t, st); err != nil || r.Desired != nil || r.Generation != 2 {
		t.Fatalf("answer to the frame after a sparse heartbeat: %+v %v", r, err)
	}
	// Quiet for two intervals and a half: the sparse heartbeat is answered.
	clk.Advance(25 * time.Minute)
	st.Send(api.Sync{Generation: 2, Sparse: true})
	if r, err := recv(t, st); err != nil || r.Desired != nil || r.Generation != 2 {
		t.Fatalf("a sparse heartbeat after a quiet stream: %+v %v", r, err)
	}
}

// The heartbeat fast path reads every frame it accepts as the decoder does, and accepts every
// plain sparse heartbeat an agent writes.
func FuzzPlainHeartbeat(f *testing.F) {
	for _, s := range []string{`{"generation":7,"sparse":true}`, `{"generation":-0,"sparse":true}`,
		`{"generation":007,"sparse":true}`, `{"generation":+7,"sparse":true}`, `{"generation":1e3,"sparse":true}`,
		`{"generation":9223372036854775808,"sparse":true}`, `{"generation": 7,"sparse":true}`,
		`{"generation":7,"sparse":true,"apps":[]}`, `{"generation":,"sparse":true}`} {
		f.Add([]byte(s), int64(0))
	}
	f.Add([]byte(nil), int64(-9223372036854775808))
	f.Fuzz(func(t *testing.T, frame []byte, gen int64) {
		if got, ok := plainHeartbeat(frame); ok {
			var want api.Sync
			if err := decodeJSON(bytes.NewReader(frame), &want); err != nil {
				t.Fatalf("fast path took %q, which the decoder refuses: %v", frame, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("fast path read %q as %+v, the decoder as %+v", frame, got, want)
			}
		}
		sent, err := json.Marshal(api.Sync{Generation: gen, Sparse: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := plainHeartbeat(sent); !ok || got.Generation != gen || !got.Sparse {
			t.Fatalf("fast path missed the agent's heartbeat %s: %+v %v", sent, got, ok)
		}
	})
}

// The poller's own turn handles a plain sparse heartbeat at the current generation, from a node
// that is up, by noting the node seen and, when the stream is due one, returning a plain answer;
// every other frame it leaves untouched for a worker's handleFrame.
func TestQuickFrame(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: 10 * time.Minute, HeartbeatGrace: 15 * time.Minute})
	h.site("ams", 1)
	rawAgent(t, h, "ams", "n1")
	t0 := clk.Now()
	h.srv.det.Heartbeat("n1", t0)
	as := &agentStream{node: "n1", expires: t0.Add(time.Hour), st: &stream{}}
	as.st.answered.Store(t0.UnixNano())
	beat := func(gen int64) []byte { b, _ := json.Marshal(api.Sync{Generation: gen, Sparse: true}); return b }

	clk.Advance(5 * time.Minute)
	for _, frame := range [][]byte{
		beat(0),                    // an older generation: the answer carries the desired state
		[]byte(`{"generation":1}`), // not sparse: answered
		[]byte(`{"generation": 1,"sparse":true}`), // not the form agents write: the decoder's
		[]byte(`{"generation":1,"sparse":true,"apps":[]}`),
	} {
		if q, _, _ := h.srv.quickFrame(as, frame); q != notQuick {
			t.Errorf("quickFrame took %s", frame)
		}
	}
	if got := h.srv.det.Sweep(t0.Add(16 * time.Minute)); len(got) != 1 {
		t.Fatalf("frames quickFrame refused were noted: Sweep = %v", got)
	}
	// n1 is down now: its heartbeat is handleFrame's, which records the return.
	if q, _, _ := h.srv.quickFrame(as, beat(1)); q != notQuick {
		t.Fatal("quickFrame took the heartbeat of a node held down")
	}
	h.srv.det.Heartbeat("n1", clk.Now())
	if q, _, _ := h.srv.quickFrame(as, beat(1)); q != heard {
		t.Fatalf("quickFrame made %v of a plain sparse heartbeat on a stream answered lately, want heard", q)
	}
	if got := h.srv.det.Sweep(t0.Add(19 * time.Minute)); len(got) != 0 {
		t.Fatalf("a node quickFrame noted 14 minutes ago was swept: %v", got)
	}
	clk.Advance(21 * time.Minute) // 26 minutes since the stream's last answer: one is due
	q, reply, at := h.srv.quickFrame(as, beat(1))
	if want := (api.SyncReply{Generation: 1, HeartbeatInterval: api.Duration(10 * time.Minute)}); q != answerDue || !reflect.DeepEqual(reply, want) || !at.Equal(clk.Now()) {
		t.Fatalf("quickFrame on a stream due an answer: %v %+v %v, want answerDue %+v at %v", q, reply, at, want, clk.Now())
	}
	if got := h.srv.det.Sweep(clk.Now().Add(14 * time.Minute)); len(got) != 0 {
		t.Fatalf("a heartbeat due an answer was not noted: Sweep = %v", got)
	}
	as.expires = clk.Now()
	if q, _, _ := h.srv.quickFrame(as, beat(1)); q != notQuick {
		t.Fatal("quickFrame took a heartbeat on an expired session")
	}
}

// A node judged silent that opens a new stream before its stream is ended keeps the new one:
// only a stream opened at or before the judgment is ended.
func TestEndStreamSparesANewerStream(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Minute})
	h.site("ams", 1)
	_, session := rawAgent(t, h, "ams", "n1")
	judged := clk.Now()
	clk.Advance(time.Second)
	conn, br := rawStream(t, h, session().Token, `{"generation":1}`+"\n")
	replies(t, br, 1)
	h.srv.hub.endStream("n1", judged)
	io.WriteString(conn, `{"generation":1}`+"\n")
	replies(t, br, 1)
	h.srv.hub.endStream("n1", clk.Now())
	if _, err := br.ReadBytes('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("a stream opened before the judgment: %v", err)
	}
}

// A node that comes back after it was judged down is answered at once, even while the store's
// status writes wait (here: held up on purpose); its return reaches the store afterwards.
func TestReturnDoesNotWaitForTheStore(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Minute})
	ctx := context.Background()
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	tok := session().Token
	st := openStream(t, ac, tok)
	st.Send(api.Sync{})
	if _, err := recv(t, st); err != nil {
		t.Fatal(err)
	}
	if got := h.srv.det.Sweep(clk.Now().Add(time.Hour)); len(got) != 1 || got[0] != "n1" {
		t.Fatalf("sweep found %v", got)
	}
	h.srv.setStatus(ctx, "n1", api.StatusDown)
	down := h.waitEvent(0, api.EventNodeDown, "n1")

	h.srv.statusMu.Lock() // the store's status writes wait from here on
	st = openStream(t, ac, tok)
	st.Send(api.Sync{Generation: 1})
	_, err := recv(t, st)
	if n, _ := h.admin.Node(ctx, "n1"); n.Status != api.StatusDown {
		t.Errorf("the store has n1 %s while its status write is held up", n.Status)
	}
	h.srv.statusMu.Unlock()
	if err != nil {
		t.Fatalf("a node coming back, while status writes wait: %v", err)
	}
	h.waitEvent(down.ID, api.EventNodeUp, "n1")
}
