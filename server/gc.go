package server

import (
	"context"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
)

// downloads counts the blob downloads in progress, so the collector never removes a blob that
// someone is reading.
type downloads struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *downloads) begin(sum string) func() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[sum]++
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.n[sum]--; d.n[sum] == 0 {
			delete(d.n, sum)
		}
	}
}

func (d *downloads) busy(sum string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[sum] > 0
}

// CollectBlobs removes blobs that no release refers to and that were last written more than
// the grace period ago (a push stores its blob before the release is recorded), unless they are
// being downloaded. It returns the removed sums.
func (s *Server) CollectBlobs(ctx context.Context) ([]string, error) {
	blobs, err := s.blobs.List()
	if err != nil {
		return nil, err
	}
	refs, err := s.store.ReferencedBlobs(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clk.Now()
	var removed []string
	for _, b := range blobs {
		if refs[b.Sum] || now.Sub(b.ModTime) < s.cfg.BlobGCGrace || s.downloading.busy(b.Sum) {
			continue
		}
		if err := s.blobs.Remove(b.Sum); err != nil {
			s.log.Warn("remove unreferenced blob", "sha256", b.Sum, "err", err)
			continue
		}
		removed = append(removed, b.Sum)
		ev, err := s.store.AppendEvent(ctx, api.Event{Time: now.UTC(), Type: "blob.collected", Subject: "sha256:" + b.Sum, Data: map[string]any{"size": b.Size}})
		if err == nil {
			s.published(ev)
		}
	}
	return removed, nil
}

// gcLoop collects blobs every quarter of the grace period.
func (s *Server) gcLoop(ctx context.Context) {
	every := max(s.cfg.BlobGCGrace/4, time.Minute)
	for {
		t := s.clk.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if _, err := s.CollectBlobs(ctx); err != nil {
			s.log.Warn("blob collection", "err", err)
		}
	}
}
