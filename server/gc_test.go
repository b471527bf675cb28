package server

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/internal/bundletest"
)

func TestCollectBlobs(t *testing.T) {
	h := start(t, Config{BlobGCGrace: time.Hour})
	ctx := context.Background()
	sg := newSigner(t)
	h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: sg.pub()})
	b := bundletest.Build(t, "hello", "1.0.0", "kept")
	rel, err := push(h, b, sg.sign(b))
	if err != nil {
		t.Fatal(err)
	}
	put := func(data string, age time.Duration) string {
		sum, _, _, err := h.srv.blobs.Put(bytes.NewReader([]byte(data)))
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		os.Chtimes(h.srv.blobs.Path(sum), old, old)
		return sum
	}
	orphan := put("orphan", 2*time.Hour)
	reading := put("being downloaded", 2*time.Hour)
	fresh := put("pushed a minute ago", time.Minute)
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(h.srv.blobs.Path(rel.SHA256), old, old) // referenced: kept however old

	done := h.srv.downloading.begin(reading)
	removed, err := h.srv.CollectBlobs(ctx)
	if err != nil || len(removed) != 1 || removed[0] != orphan {
		t.Fatalf("first collection removed %v (%v), want only the orphan", removed, err)
	}
	for _, sum := range []string{rel.SHA256, reading, fresh} {
		if _, err := os.Stat(h.srv.blobs.Path(sum)); err != nil {
			t.Fatalf("blob %s was removed: %v", sum[:12], err)
		}
	}
	done()
	if removed, _ := h.srv.CollectBlobs(ctx); len(removed) != 1 || removed[0] != reading {
		t.Fatalf("second collection removed %v, want the finished download's blob", removed)
	}
	h.waitEvent(0, "blob.collected", "sha256:"+orphan)
}

// TestCollectBlobsRechecksUnderLock: a push of the same bytes as an old orphan blob commits and
// records its release after the collector listed blobs and references but before it removes
// the orphan. The collector decides again under the blob's lock and keeps it.
func TestCollectBlobsRechecksUnderLock(t *testing.T) {
	h := start(t, Config{BlobGCGrace: time.Hour})
	ctx := context.Background()
	sg := newSigner(t)
	h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: sg.pub()})
	b := bundletest.Build(t, "hello", "1.0.0", "pushed while collecting")
	sum, _, _, err := h.srv.blobs.Put(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(h.srv.blobs.Path(sum), old, old)

	pushed := false
	removed, err := h.srv.collectBlobs(ctx, func(candidate string) {
		if candidate != sum {
			return
		}
		if _, err := push(h, b, sg.sign(b)); err != nil {
			t.Errorf("push during collection: %v", err)
		}
		pushed = true
		// Aged again, so that only the fresh look at the references can keep it.
		os.Chtimes(h.srv.blobs.Path(sum), old, old)
	})
	if err != nil || len(removed) != 0 || !pushed {
		t.Fatalf("collection removed %v (%v; pushed meanwhile: %v), want nothing", removed, err, pushed)
	}
	f, err := h.srv.blobs.Open(sum)
	if err != nil {
		t.Fatalf("the blob of a release recorded during collection was removed: %v", err)
	}
	f.Close()
}
