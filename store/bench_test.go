package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// BenchmarkChangeLabels10k relabels 10,000 nodes in one change, as `ferry node label --all` does.
func BenchmarkChangeLabels10k(b *testing.B) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "ferry.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	s.CreateSite(ctx, api.Site{Name: "ams", Tier: 1, CreatedAt: now})
	s.CreateToken(ctx, store.TokenRecord{ID: "t", SecretHash: "h", Kind: store.KindEnroll, Site: "ams", CreatedAt: now})
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("n%05d", i)
		if _, _, err := s.EnrollNode(ctx, "t", "h", store.NodeRecord{Name: names[i], PublicKey: names[i]}, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.ChangeLabels(ctx, names, map[string]string{"push": fmt.Sprint(i)}, nil, now); err != nil {
			b.Fatal(err)
		}
	}
}
