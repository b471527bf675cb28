package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/store"
)

// fleet10k returns a store with 10,000 enrolled nodes and their names.
func fleet10k(b *testing.B) (*store.SQLite, []string) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "ferry.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	names := make([]string, 10000)
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, CreatedAt: now}); err != nil {
			return err
		}
		for i := range names {
			names[i] = fmt.Sprintf("n%05d", i)
			if err := tx.InsertNode("ams", store.NodeRecord{Name: names[i], PublicKey: names[i]}, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s, names
}

// BenchmarkChangeLabels10k relabels 10,000 nodes in one change, as `ferry node label --all` does,
// through the inventory service, which runs its rules over the store's primitives.
func BenchmarkChangeLabels10k(b *testing.B) {
	ctx := context.Background()
	s, names := fleet10k(b)
	inv := inventory.New(s, clock.Real{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := inv.ChangeLabels(ctx, names, map[string]string{"push": fmt.Sprint(i)}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFeedAfterChangeLabels10k reads what the server's feed reads after such a change:
// its 10,000 events, then every node.
func BenchmarkFeedAfterChangeLabels10k(b *testing.B) {
	ctx := context.Background()
	s, names := fleet10k(b)
	last, _ := s.LastEventID(ctx)
	if _, _, err := inventory.New(s, clock.Real{}).ChangeLabels(ctx, names, map[string]string{"push": "x"}, nil); err != nil {
		b.Fatal(err)
	}
	b.Run("Events", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if evs, err := s.Events(ctx, last, store.FeedBatch); err != nil || len(evs) != len(names) {
				b.Fatal(len(evs), err)
			}
		}
	})
	b.Run("Nodes", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != len(names) {
				b.Fatal(len(nodes), err)
			}
		}
	})
}

// BenchmarkAssign10k deploys a release to 10,000 nodes in one change, as `ferry deploy --all`
// does; each iteration assigns another version, so every node changes.
func BenchmarkAssign10k(b *testing.B) {
	ctx := context.Background()
	s, names := fleet10k(b)
	now := time.Now()
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := 0; i <= b.N; i++ {
			if err := tx.InsertRelease(api.Release{App: "hello", Version: fmt.Sprintf("1.0.%d", i), Class: "minor",
				SHA256: fmt.Sprintf("%064x", i), Signature: "c2ln", SignedBy: "K", CreatedAt: now, Manifest: map[string]any{}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := s.Update(ctx, func(tx store.Tx) error {
			changed, err := tx.AssignNodes(names, "hello", fmt.Sprintf("1.0.%d", i), "", now)
			if err == nil && len(changed) != len(names) {
				err = fmt.Errorf("changed %d of %d", len(changed), len(names))
			}
			if err == nil {
				_, err = tx.AppendEvents(api.NewEvent(now, api.EventReleaseDeployed, "hello", api.ReleaseDeployed{Nodes: changed}))
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTouchNodes10k is the once-a-minute flush of a fleet's last-seen times.
func BenchmarkTouchNodes10k(b *testing.B) {
	ctx := context.Background()
	s, names := fleet10k(b)
	seen := make(map[string]time.Time, len(names))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now()
		for _, n := range names {
			seen[n] = now
		}
		if err := s.TouchNodes(ctx, seen); err != nil {
			b.Fatal(err)
		}
	}
}
