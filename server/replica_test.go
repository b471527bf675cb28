package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// follower is a second replica's handle on a store that another server owns: it never leads
// and leaves closing the store to the owner.
type follower struct{ store.Store }

func (follower) Lead(ctx context.Context) (context.Context, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (follower) Close() error { return nil }

// Two replicas over one store: the leader never hears n1, whose agent talks to the other
// replica, and does not mark it down while that replica holds its stream and reports; once the
// stream ends, the leader marks n1 down a grace period after the other replica last heard it.
func TestReplicasSpeakForTheirStreams(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	// grace 3 min; one cluster key, as replicas share
	cfg := Config{Clock: clk, HeartbeatInterval: time.Minute, ClusterKey: filepath.Join(t.TempDir(), "cluster.key")}
	cfg.Store = st
	a := start(t, cfg)
	cfg.Store = follower{st}
	b := start(t, cfg)
	b.admin = b.client(a.srv.AdminToken) // made by a; b writes none of its own
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// a: sweep, collection, flush; b: sweep, flush.
	const loops = 5
	step := func() {
		t.Helper()
		clk.Advance(time.Minute)
		if err := clk.WaitPending(ctx, loops); err != nil {
			t.Fatal(err)
		}
	}
	a.site("ams", 1)
	ac, session := rawAgent(t, b, "ams", "n1")
	stream := openStream(t, ac, session().Token)
	enrolled := clk.Now()
	var lastWord time.Time
	for i := 0; i < 10; i++ {
		lastWord = clk.Now()
		stream.Send(api.Sync{})
		if _, err := recv(t, stream); err != nil {
			t.Fatal(err)
		}
		step()
	}
	if n, err := a.admin.Node(ctx, "n1"); err != nil || n.Status != api.StatusUp {
		t.Fatalf("n1, speaking to the replica that does not lead: %+v %v", n, err)
	}
	// The leader did judge n1: it found the other replica speaking for it.
	if seen, _ := a.srv.det.LastSeen("n1"); !seen.After(enrolled.Add(3 * time.Minute)) {
		t.Fatalf("the leader last counted n1 seen at %s: its sweep never judged it", seen)
	}

	since, _ := st.LastEventID(ctx)
	stream.Close()
	for i := 0; ; i++ {
		if i == 10 {
			t.Fatal("n1 not marked down 10 minutes after its stream ended")
		}
		step()
		if n, _ := a.admin.Node(ctx, "n1"); n.Status == api.StatusDown {
			break
		}
	}
	if down := a.waitEvent(since, api.EventNodeDown, "n1"); down.Time.Sub(lastWord) < 3*time.Minute {
		t.Fatalf("n1 marked down at %s, within the grace period of its last word at %s", down.Time, lastWord)
	}
}
