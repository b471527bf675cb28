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

// waitingStore is a store on which the server does not lead until lead is closed, as a replica
// whose peer leads.
type waitingStore struct {
	store.Store
	lead chan struct{}
}

func (w waitingStore) Lead(ctx context.Context) (context.Context, error) {
	select {
	case <-w.lead:
		return ctx, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// The down-node sweep and blob collection run only on the server that leads.
func TestSingletonWorkWaitsForTheLead(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	ws := waitingStore{Store: st, lead: make(chan struct{})}
	h := start(t, Config{DataDir: dir, Store: ws, Clock: clk, HeartbeatInterval: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.site("ams", 1)
	rawAgent(t, h, "ams", "n1")
	// The flush and the sweep of this replica's own streams wait on the clock; no collection.
	if err := clk.WaitPending(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := clk.Pending(); n != 2 {
		t.Fatalf("%d timers wait before the server leads, want the flush's and the sweep's", n)
	}
	// Silent long past the grace period, n1 is not marked down by a server that does not lead.
	clk.Advance(4 * time.Minute)
	if err := clk.WaitPending(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Node(ctx, "n1"); err != nil || n.Status != api.StatusUp {
		t.Fatalf("n1 before the server leads: %+v %v", n, err)
	}
	close(ws.lead)
	if err := clk.WaitPending(ctx, 3); err != nil {
		t.Fatalf("the sweep and the collection did not start once leading: %v", err)
	}
	clk.Advance(4 * time.Minute)
	h.waitEvent(0, api.EventNodeDown, "n1")
}
