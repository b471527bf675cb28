package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/bundletest"
)

// TestPushRaceKeepsReferencedBlobs pushes the same bytes concurrently with mixed outcomes —
// signed by a trusted key (accepted), by an untrusted key (refused by the signature check) and
// unsigned (refused when recorded, the first channel refusing unsigned releases) — round after
// round with a fresh version, so the blob is new in every round. A refused push must never take
// away the blob an accepted push has just referenced: every release must keep its blob, and the
// refused pushes must leave nothing else behind.
func TestPushRaceKeepsReferencedBlobs(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	trusted, stranger := newSigner(t), newSigner(t)
	if _, err := h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: trusted.pub()}); err != nil {
		t.Fatal(err)
	}
	// Each round pushes one fresh version a few times at once. Few pushes per round, so that a
	// later push does not put back a blob that a refused one took away and hide the loss; many
	// rounds, several of them in flight at a time.
	const rounds, inFlight = 40, 8
	// An unsigned push is refused while the release does not exist yet and answered with the
	// release once it does (the same bytes under the same version are idempotent).
	const refusedOrSame = -1
	type attempt struct {
		sig  []byte
		code int // 0: accepted; refusedOrSame: 409 or accepted
	}
	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for i := range rounds {
		b := bundletest.Build(t, "race", fmt.Sprintf("1.0.%d", i), fmt.Sprintf("round %d", i))
		good := trusted.sign(b)
		attempts := []attempt{{good, 0}, {nil, refusedOrSame}}
		if i%3 == 0 {
			attempts = append(attempts, attempt{stranger.sign(b), 403})
		}
		if i%2 == 1 {
			attempts[0], attempts[1] = attempts[1], attempts[0]
		}
		slots <- struct{}{}
		begin := make(chan struct{})
		var round sync.WaitGroup
		for _, a := range attempts {
			round.Add(1)
			go func() {
				defer round.Done()
				<-begin
				_, err := push(h, b, a.sig)
				switch got := client.StatusOf(err); {
				case a.code == refusedOrSame && (err == nil || got == 409):
				case (a.code == 0 && err != nil) || (a.code != 0 && got != a.code):
					t.Errorf("round %d: push (signed: %v) = %v, want status %d", i, a.sig != nil, err, a.code)
				}
			}()
		}
		close(begin)
		wg.Add(1)
		go func() {
			defer wg.Done()
			round.Wait()
			<-slots
		}()
	}
	wg.Wait()

	rels, err := h.admin.Releases(ctx, "race")
	if err != nil || len(rels) != rounds {
		t.Fatalf("releases: %d (%v), want %d", len(rels), err, rounds)
	}
	missing := 0
	for _, rel := range rels {
		req, _ := http.NewRequest("GET", h.addr+"/v1/blobs/sha256:"+rel.SHA256, nil)
		req.Header.Set("Authorization", "Bearer "+h.srv.AdminToken)
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			missing++
			t.Errorf("release %s@%s: GET its blob sha256:%s = %d", rel.App, rel.Version, rel.SHA256[:12], resp.StatusCode)
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d releases lost their blob", missing, len(rels))
	}
	if files := blobFiles(t, h); len(files) != rounds {
		t.Fatalf("%d files in the blob store, want one blob per release (%d): %v", len(files), rounds, files)
	}
	if tmps, _ := os.ReadDir(filepath.Join(h.srv.cfg.DataDir, "blobs", "tmp")); len(tmps) != 0 {
		t.Fatalf("temporary files left: %d", len(tmps))
	}
}
