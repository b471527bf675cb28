package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store"
)

// testProbes: a probe round-trips whole, OpenProbes (in a transaction or not) finds only those
// still open, an update changes what it says and nothing else, and Probes lists newest first.
func testProbes(t *testing.T, s store.Store) {
	ctx := context.Background()
	rec := store.ProbeRecord{Doc: []byte(`{"nodes":["n1","n2"]}`), State: "running", Open: true, CreatedAt: t0, CreatedBy: "token:abc", UpdatedAt: t0}
	var ids []int64
	err := s.Update(ctx, func(tx store.Tx) error {
		for range 2 {
			id, err := tx.InsertProbe(rec)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil || len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("insert: ids %v, %v", ids, err)
	}
	got, err := s.Probe(ctx, ids[0])
	want := rec
	want.ID = ids[0]
	if err != nil || !equalProbe(got, want) {
		t.Fatalf("read back %+v, %v\nwant %+v", got, err, want)
	}
	if _, err := s.Probe(ctx, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown probe: %v", err)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Probe(9999); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown probe in a transaction: %v", err)
		}
		p, err := tx.Probe(ids[0])
		if err != nil || !equalProbe(p, want) {
			t.Errorf("read in a transaction %+v, %v", p, err)
		}
		p.Doc, p.State, p.Open, p.UpdatedAt = []byte(`{"done":true}`), "completed", false, t0.Add(time.Minute)
		p.CreatedBy = "ignored" // an update writes the document, state, open and time alone
		if err := tx.UpdateProbe(p); err != nil {
			return err
		}
		if err := tx.UpdateProbe(store.ProbeRecord{ID: 9999}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update of an unknown probe: %v", err)
		}
		open, err := tx.OpenProbes()
		if err != nil || len(open) != 1 || open[0].ID != ids[1] {
			t.Errorf("open probes %+v, %v", open, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Probe(ctx, ids[0])
	want.Doc, want.State, want.Open, want.UpdatedAt = []byte(`{"done":true}`), "completed", false, t0.Add(time.Minute)
	if err != nil || !equalProbe(got, want) {
		t.Fatalf("after update %+v, %v\nwant %+v", got, err, want)
	}
	list, err := s.Probes(ctx)
	if err != nil || len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[0] {
		t.Fatalf("list %+v, %v", list, err)
	}
	if open, err := s.OpenProbes(ctx); err != nil || len(open) != 1 || open[0].ID != ids[1] {
		t.Fatalf("open probes outside a transaction %+v, %v", open, err)
	}
}

// testPruneProbes: PruneProbes forgets the closed probes last updated before the cut, to the
// fraction of a second, and keeps the open ones and the newest keep whatever their age.
func testPruneProbes(t *testing.T, s store.Store) {
	ctx := context.Background()
	old := t0.AddDate(0, 0, -40)
	cut := t0.Add(500 * time.Millisecond)
	probes := []struct {
		open    bool
		updated time.Time
		stays   bool
	}{
		{false, old, false},
		{true, old, true},  // open: the engine's still
		{false, t0, false}, // half a second before the cut
		{false, cut, true}, // at the cut: not before it
		{false, old, true}, // the newest three stay whatever their age
		{false, old, true},
		{false, old, true},
	}
	var ids, want []int64
	err := s.Update(ctx, func(tx store.Tx) error {
		for _, p := range probes {
			id, err := tx.InsertProbe(store.ProbeRecord{Doc: []byte(`{}`), State: "completed", Open: p.open, CreatedAt: old, CreatedBy: "token:abc", UpdatedAt: p.updated})
			if err != nil {
				return err
			}
			ids = append(ids, id)
			if p.stays {
				want = append(want, id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneProbes(ctx, cut, 3); err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
	probeIDs := func() []int64 {
		t.Helper()
		list, err := s.Probes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for i := len(list) - 1; i >= 0; i-- {
			got = append(got, list[i].ID)
		}
		return got
	}
	if got := probeIDs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("left %v; want %v", got, want)
	}
	if n, err := s.PruneProbes(ctx, t0.Add(time.Hour), 0); err != nil || n != 4 {
		t.Fatalf("pruned %d keeping none, %v; want 4", n, err)
	}
	if got := probeIDs(); len(got) != 1 || got[0] != ids[1] {
		t.Fatalf("left %v; want the open probe %d alone", got, ids[1])
	}
}

func equalProbe(a, b store.ProbeRecord) bool {
	return a.ID == b.ID && string(a.Doc) == string(b.Doc) && a.State == b.State && a.Open == b.Open &&
		a.CreatedAt.Equal(b.CreatedAt) && a.CreatedBy == b.CreatedBy && a.UpdatedAt.Equal(b.UpdatedAt)
}
