package server

import (
	"context"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/store"
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
// the grace period ago, unless they are being downloaded. It returns the removed sums.
//
// The listing is only a first cut: each candidate is decided again under the blob store's lock
// of its sum, with the references read afresh, since a push of the same bytes may have committed
// the blob and recorded a release meanwhile — and a push does both under that lock.
func (s *Server) CollectBlobs(ctx context.Context) ([]string, error) {
	return s.collectBlobs(ctx, nil)
}

// collectBlobs is CollectBlobs; beforeLock, when set, runs for each candidate after the listing
// and before its lock is taken (for tests).
func (s *Server) collectBlobs(ctx context.Context, beforeLock func(sum string)) ([]string, error) {
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
		if !s.collectable(b, refs, now) {
			continue
		}
		if beforeLock != nil {
			beforeLock(b.Sum)
		}
		gone, size, err := s.collectBlob(ctx, b.Sum, now)
		if err != nil {
			return removed, err
		}
		if !gone {
			continue
		}
		removed = append(removed, b.Sum)
		if _, err := store.AppendEvent(ctx, s.store, api.NewEvent(now.UTC(), api.EventBlobCollected, "sha256:"+b.Sum, api.BlobCollected{Size: size})); err != nil {
			s.log.Error("record a collected blob", "sha256", b.Sum, "err", err)
		}
	}
	return removed, nil
}

// collectable reports whether a blob may be removed: unreferenced, older than the grace period
// (counted from its last write) and not being downloaded.
func (s *Server) collectable(b blobstore.Blob, refs map[string]bool, now time.Time) bool {
	return !refs[b.Sum] && now.Sub(b.ModTime) >= s.cfg.BlobGCGrace && !s.downloading.busy(b.Sum)
}

// collectBlob removes the blob sum if, looked at again under its lock, it is still collectable.
// An error is the store's: the collection stops there.
func (s *Server) collectBlob(ctx context.Context, sum string, now time.Time) (removed bool, size int64, err error) {
	defer s.blobs.Lock(sum)()
	b, err := s.blobs.Stat(sum)
	if err != nil {
		return false, 0, nil // gone meanwhile
	}
	if s.downloading.busy(sum) || now.Sub(b.ModTime) < s.cfg.BlobGCGrace {
		return false, 0, nil
	}
	// The references are read with the blob out of its place (see blobstore.Collect), so a push
	// of the same bytes on another replica either is seen here or puts the blob back itself.
	removed, err = s.blobs.Collect(sum, func() (bool, error) {
		refs, err := s.store.ReferencedBlobs(ctx)
		return refs[sum], err
	})
	if err != nil {
		return false, 0, err
	}
	return removed, b.Size, nil
}

// gcLoop collects blobs every quarter of the grace period, and prunes check history and old
// probes as often.
func (s *Server) gcLoop(ctx context.Context) {
	every := max(s.cfg.BlobGCGrace/4, time.Minute)
	for s.sleep(ctx, every) {
		if _, err := s.CollectBlobs(ctx); err != nil {
			s.log.Warn("blob collection", "err", err)
		}
		if err := s.health.Prune(ctx); err != nil {
			s.log.Warn("prune check history", "err", err)
		}
		if n, err := s.probes.Prune(ctx); err != nil {
			s.log.Warn("prune old probes", "err", err)
		} else if n > 0 {
			s.log.Info("pruned old probes", "probes", n)
		}
	}
}
