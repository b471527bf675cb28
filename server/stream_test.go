package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
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

// Protocol 2: one stream per agent carries heartbeats and reports up, answers and pushes down.
func TestAgentStream(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk, HeartbeatInterval: time.Hour})
	ctx := context.Background()
	h.site("ams", 1)
	ac, session := rawAgent(t, h, "ams", "n1")
	st, err := ac.OpenStream(ctx, session().Token)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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

	// Protocol 1 agents long-poll; they cannot open a stream.
	v1, session1 := rawAgent(t, h, "ams", "n2")
	v1.Protocol = 1
	if _, err := v1.OpenStream(ctx, session1().Token); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "protocol 2") {
		t.Fatalf("stream on protocol 1: %v", err)
	}
	if r, err := v1.Sync(ctx, session1().Token, api.Sync{}); err != nil || r.Desired == nil {
		t.Fatalf("protocol 1 sync: %+v %v", r, err)
	}
}
