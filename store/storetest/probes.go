package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store"
)

// testProbes: a probe round-trips whole, OpenProbes finds only those still open, an update
// changes what it says and nothing else, and Probes lists newest first.
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
}

func equalProbe(a, b store.ProbeRecord) bool {
	return a.ID == b.ID && string(a.Doc) == string(b.Doc) && a.State == b.State && a.Open == b.Open &&
		a.CreatedAt.Equal(b.CreatedAt) && a.CreatedBy == b.CreatedBy && a.UpdatedAt.Equal(b.UpdatedAt)
}
