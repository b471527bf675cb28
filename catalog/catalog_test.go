package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/internal/backend"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/store"
)

func TestMain(m *testing.M) { os.Exit(backend.Main(m)) }

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newService(t *testing.T, st store.Store) *Service {
	t.Helper()
	blobs, err := blobstore.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return New(st, blobs, clock.NewFake(t0), release.Limits{}, slog.New(slog.DiscardHandler))
}

// put admits a release as a checked push would, with made-up content.
func put(t *testing.T, c *Service, app, version, blob, signer string) (api.Event, bool, error) {
	t.Helper()
	return c.admit(context.Background(), api.Release{App: app, Version: version, Class: "minor", SHA256: blob, Size: 10,
		SignedBy: signer, Signature: "c2ln", CreatedAt: t0, Manifest: map[string]any{"app": app}})
}

func mustPut(t *testing.T, c *Service, app, version, blob string) {
	t.Helper()
	if _, _, err := put(t, c, app, version, blob, "0123456789ABCDEF"); err != nil {
		t.Fatal(err)
	}
}

func isKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: %v; want %v", what, err, kind)
	}
}

func TestKeys(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c := newService(t, st)
		pub, _, err := minisign.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		k, ev, err := c.TrustKey(ctx, pub.String(), "release team")
		if err != nil || ev.Type != api.EventKeyTrusted || k.ID != fmt.Sprintf("%016X", pub.ID()) {
			t.Fatalf("TrustKey = %+v %+v %v", k, ev, err)
		}
		_, _, err = c.TrustKey(ctx, pub.String(), "")
		isKind(t, "trust twice", err, fault.ErrConflict)
		_, _, err = c.TrustKey(ctx, "RWQ-not-a-key", "")
		isKind(t, "a malformed key", err, fault.ErrInvalid)
		_, _, err = c.TrustKey(ctx, pub.String(), string(make([]byte, MaxKeyComment+1)))
		isKind(t, "an over-long comment", err, fault.ErrInvalid)
		if _, err := c.RevokeKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		_, err = c.RevokeKey(ctx, k.ID)
		isKind(t, "revoke twice", err, fault.ErrNotFound)
		_, _, err = c.TrustKey(ctx, pub.String(), "")
		isKind(t, "trust a revoked key again", err, fault.ErrConflict)
		keys, err := st.Keys(ctx)
		if err != nil || len(keys) != 1 || keys[0].RevokedAt == nil || keys[0].Comment != "release team" {
			t.Fatalf("Keys = %+v %v", keys, err)
		}
	})
}

// A version is immutable: the same content again changes nothing, other content is refused, and
// so is an unsigned release while the first channel takes signed ones only.
func TestAdmit(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c := newService(t, st)
		ev, created, err := put(t, c, "hello", "1.4.0", "aa", "0123456789ABCDEF")
		if err != nil || !created || ev.Type != api.EventReleasePushed {
			t.Fatalf("admit = %+v %v %v", ev, created, err)
		}
		got, err := st.Release(ctx, "hello", "1.4.0")
		if err != nil || got.Signature != "c2ln" || fmt.Sprint(got.Channels) != "[unstable]" || got.Manifest["app"] != "hello" {
			t.Fatalf("Release = %+v %v", got, err)
		}
		if ev, created, err := put(t, c, "hello", "1.4.0", "aa", "0123456789ABCDEF"); err != nil || created || ev.ID != 0 {
			t.Fatalf("same bytes again: %+v %v %v", ev, created, err)
		}
		_, _, err = put(t, c, "hello", "1.4.0", "bb", "0123456789ABCDEF")
		isKind(t, "other bytes under the same version", err, fault.ErrConflict)
		_, _, err = put(t, c, "hello", "1.5.0", "cc", "")
		isKind(t, "unsigned release", err, fault.ErrConflict)
		if _, err := st.Release(ctx, "hello", "1.5.0"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("refused release was stored: %v", err)
		}
		if refs, err := st.ReferencedBlobs(ctx); err != nil || len(refs) != 1 || !refs["aa"] {
			t.Fatalf("ReferencedBlobs = %v %v", refs, err)
		}
		if log, _ := st.Events(ctx, 0, 100); len(log) != 1 {
			t.Fatalf("log after one admitted push: %+v", log)
		}
	})
}

func TestChannels(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c := newService(t, st)
		mustPut(t, c, "hello", "1.0.0", "a1")
		mustPut(t, c, "hello", "1.1.0", "a2")
		_, err := c.Promote(ctx, "hello", "1.0.0", "production", false)
		isKind(t, "skip a step without force", err, fault.ErrConflict)
		_, err = c.Promote(ctx, "hello", "1.0.0", "unstable", false)
		isKind(t, "promote into its own channel", err, fault.ErrConflict)
		_, err = c.Promote(ctx, "hello", "1.0.0", "nope", false)
		isKind(t, "promote into a missing channel", err, fault.ErrNotFound)
		if ev, err := c.Promote(ctx, "hello", "1.0.0", "preview", false); err != nil || ev.Fields()["from"] != "unstable" {
			t.Fatalf("promote: %+v %v", ev, err)
		}
		if ev, err := c.Promote(ctx, "hello", "1.1.0", "production", true); err != nil || ev.Fields()["forced"] != true {
			t.Fatalf("forced promote: %+v %v", ev, err)
		}
		_, err = c.Promote(ctx, "hello", "9.9.9", "preview", false)
		isKind(t, "promote a missing release", err, store.ErrNotFound)
		if _, err := c.CreateChannel(ctx, api.ChannelCreate{Name: "canary", After: "preview"}); err != nil {
			t.Fatal(err)
		}
		_, err = c.CreateChannel(ctx, api.ChannelCreate{Name: "canary", After: "preview"})
		isKind(t, "duplicate channel", err, fault.ErrConflict)
		_, err = c.CreateChannel(ctx, api.ChannelCreate{Name: "x", After: "nope"})
		isKind(t, "channel after a missing one", err, fault.ErrNotFound)
		_, err = c.CreateChannel(ctx, api.ChannelCreate{Name: "Bad Name", After: "preview"})
		isKind(t, "channel with a bad name", err, fault.ErrInvalid)
		_, err = c.CreateChannel(ctx, api.ChannelCreate{Name: "y"})
		isKind(t, "channel without after", err, fault.ErrInvalid)

		// Promotion follows the order with the new channel in it.
		_, err = c.Promote(ctx, "hello", "1.0.0", "production", false)
		isKind(t, "skip the new channel", err, fault.ErrConflict)
		if _, err := c.Promote(ctx, "hello", "1.0.0", "canary", false); err != nil {
			t.Fatal(err)
		}

		ev, err := c.Withdraw(ctx, "hello", "1.1.0", "crashes on start")
		var w api.ReleaseWithdrawn
		if err != nil || ev.Decode(&w) != nil || fmt.Sprint(w.Channels) != "[production unstable]" {
			t.Fatalf("withdraw: %+v %v", ev, err)
		}
		_, err = c.Withdraw(ctx, "hello", "1.1.0", "again")
		isKind(t, "withdraw twice", err, fault.ErrConflict)
		_, err = c.Withdraw(ctx, "hello", "1.0.0", " ")
		isKind(t, "withdraw without a reason", err, fault.ErrInvalid)
		_, err = c.Promote(ctx, "hello", "1.1.0", "preview", true)
		isKind(t, "promote a withdrawn release", err, fault.ErrConflict)

		rel, _, err := c.Republish(ctx, "hello", "1.0.0", 1)
		if err != nil || rel.Version != "1:1.0.0" || rel.SHA256 != "a1" || fmt.Sprint(rel.Channels) != "[unstable]" {
			t.Fatalf("republish: %+v %v", rel, err)
		}
		_, _, err = c.Republish(ctx, "hello", "1.0.0", 1)
		isKind(t, "republish twice", err, fault.ErrConflict)
		_, _, err = c.Republish(ctx, "hello", "1:1.0.0", 1)
		isKind(t, "republish under the same epoch", err, fault.ErrInvalid)

		chans, err := c.Channels(ctx, true)
		if err != nil || len(chans) != 4 {
			t.Fatalf("Channels = %+v %v", chans, err)
		}
		names := []string{}
		for _, ch := range chans {
			names = append(names, ch.Name)
		}
		if fmt.Sprint(names) != "[unstable preview canary production]" {
			t.Fatalf("channel order %v", names)
		}
		if fmt.Sprint(chans[0].Releases) != "[hello@1.0.0 hello@1:1.0.0]" || len(chans[3].Releases) != 0 {
			t.Fatalf("channel releases: %v / %v", chans[0].Releases, chans[3].Releases)
		}
		if chans[0].Candidates["hello"] != "1:1.0.0" || chans[2].Candidates["hello"] != "1.0.0" {
			t.Fatalf("candidates: %v / %v", chans[0].Candidates, chans[2].Candidates)
		}
		last := chans[3].History[len(chans[3].History)-1]
		if last.Action != "withdrawn" || last.Reason != "crashes on start" {
			t.Fatalf("production history: %+v", chans[3].History)
		}
		if h := chans[2].History; len(h) != 1 || h[0].Action != "promoted" || h[0].Release != "hello@1.0.0" {
			t.Fatalf("canary history: %+v", h)
		}
		_, err = c.Channel(ctx, "nope", false)
		isKind(t, "a missing channel", err, fault.ErrNotFound)
	})
}

// Unsigned releases live only in channels that allow them: pushed, promoted or republished.
func TestUnsigned(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c := newService(t, st)
		_, err := c.SetAllowUnsigned(ctx, "nope", true)
		isKind(t, "unknown channel", err, fault.ErrNotFound)
		ev, err := c.SetAllowUnsigned(ctx, "unstable", true)
		if err != nil || ev.Type != api.EventChannelChanged {
			t.Fatalf("SetAllowUnsigned = %+v %v", ev, err)
		}
		if ev, err := c.SetAllowUnsigned(ctx, "unstable", true); err != nil || ev.Type != "" {
			t.Fatalf("unchanged SetAllowUnsigned = %+v %v", ev, err)
		}
		if _, _, err := put(t, c, "dev", "0.1.0", "d1", ""); err != nil {
			t.Fatal(err)
		}
		_, err = c.Promote(ctx, "dev", "0.1.0", "preview", false)
		isKind(t, "unsigned promoted into a signed-only channel", err, fault.ErrConflict)
		_, err = c.Promote(ctx, "dev", "0.1.0", "production", true)
		isKind(t, "unsigned forced into a signed-only channel", err, fault.ErrConflict)
		_, err = c.SetAllowUnsigned(ctx, "unstable", false)
		isKind(t, "forbid unsigned while holding one", err, fault.ErrConflict)
		if _, err := c.SetAllowUnsigned(ctx, "preview", true); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Promote(ctx, "dev", "0.1.0", "preview", false); err != nil {
			t.Fatalf("unsigned into a channel that allows it: %v", err)
		}
		if _, err := c.Withdraw(ctx, "dev", "0.1.0", "done testing"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetAllowUnsigned(ctx, "unstable", false); err != nil {
			t.Fatalf("forbid unsigned once none is left: %v", err)
		}
		_, _, err = c.Republish(ctx, "dev", "0.1.0", 1)
		isKind(t, "unsigned republished into a signed-only channel", err, fault.ErrConflict)
		chans, _ := c.Channels(ctx, false)
		if chans[0].AllowUnsigned || !chans[1].AllowUnsigned {
			t.Fatalf("channels: %+v", chans)
		}
	})
}

// A refused write leaves no trace: the rule's error rolls its transaction back whole.
func TestRefusedWritesChangeNothing(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c := newService(t, st)
		mustPut(t, c, "hello", "1.0.0", "a1")
		before, _ := st.Events(ctx, 0, 100)
		c.Promote(ctx, "hello", "1.0.0", "production", false)
		c.CreateChannel(ctx, api.ChannelCreate{Name: "unstable", After: "preview"})
		c.Republish(ctx, "hello", "9.0.0", 1)
		after, _ := st.Events(ctx, 0, 100)
		if len(after) != len(before) {
			t.Fatalf("refused writes appended events: %+v", after[len(before):])
		}
		rel, _ := st.Release(ctx, "hello", "1.0.0")
		if fmt.Sprint(rel.Channels) != "[unstable]" {
			t.Fatalf("channels after refused writes: %v", rel.Channels)
		}
	})
}
