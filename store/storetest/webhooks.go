package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// testWebhooks: a webhook round-trips whole with its cursor; a cursor only moves forward and is
// gone with its webhook; dead letters are counted, listed newest first, trimmed to MaxFailures,
// taken back (one event's or all) and removed with their webhook; another target's cursor
// starts once.
func testWebhooks(t *testing.T, s store.Store) {
	ctx := context.Background()
	update := func(fn func(store.Tx) error) error { return s.Update(ctx, fn) }
	w := store.WebhookRecord{ID: "a1", URL: "https://hooks.example/ferry", Events: []string{"rollout.*", "app.state"},
		Secret: []byte{1, 0, 0xff}, CreatedAt: t0, CreatedBy: "token:abc", Cursor: 7}
	if err := update(func(tx store.Tx) error { return tx.InsertWebhook(w) }); err != nil {
		t.Fatal(err)
	}
	if err := update(func(tx store.Tx) error { return tx.InsertWebhook(w) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second insert: %v", err)
	}
	target := api.WebhookTarget("a1")
	for _, to := range []int64{9, 8} {
		if err := update(func(tx store.Tx) error { return tx.AdvanceCursor(target, to) }); err != nil {
			t.Fatal(err)
		}
	}
	err := update(func(tx store.Tx) error {
		for i := range store.MaxFailures + 2 {
			if err := tx.InsertFailure(api.DeliveryFailure{Target: target, EventID: int64(i), EventType: "app.state", Attempts: 8, Error: "503", FailedAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := s.Webhooks(ctx)
	if err != nil || len(hooks) != 1 {
		t.Fatalf("Webhooks = %+v, %v", hooks, err)
	}
	got := hooks[0]
	if got.ID != w.ID || got.URL != w.URL || !slices.Equal(got.Events, w.Events) || !bytes.Equal(got.Secret, w.Secret) ||
		!got.CreatedAt.Equal(t0) || got.CreatedBy != w.CreatedBy || got.Cursor != 9 || got.Failures != store.MaxFailures {
		t.Fatalf("read back %+v", got)
	}
	fs, err := s.DeliveryFailures(ctx, target)
	if err != nil || len(fs) != store.MaxFailures || fs[0].EventID != store.MaxFailures+1 || fs[len(fs)-1].EventID != 2 ||
		fs[0].Error != "503" || fs[0].Attempts != 8 || !fs[0].FailedAt.Equal(t0) {
		t.Fatalf("DeliveryFailures: %d, first %+v, %v", len(fs), fs[0], err)
	}

	take := func(event int64) []int64 {
		t.Helper()
		var ids []int64
		if err := update(func(tx store.Tx) (err error) { ids, err = tx.TakeFailures(target, event); return err }); err != nil {
			t.Fatalf("TakeFailures(%d): %v", event, err)
		}
		return ids
	}
	if ids := take(5); !slices.Equal(ids, []int64{5}) {
		t.Fatalf("TakeFailures(5) = %v", ids)
	}
	if ids := take(5); len(ids) != 0 {
		t.Fatalf("TakeFailures(5) again = %v", ids)
	}
	if ids := take(0); len(ids) != store.MaxFailures-1 || ids[0] != 2 || ids[1] != 3 || ids[2] != 4 || ids[3] != 6 || ids[len(ids)-1] != store.MaxFailures+1 {
		t.Fatalf("TakeFailures(0) = %d ids, %v...", len(ids), ids[:min(len(ids), 5)])
	}
	if fs, err := s.DeliveryFailures(ctx, target); err != nil || len(fs) != 0 {
		t.Fatalf("dead letters after TakeFailures(0): %d, %v", len(fs), err)
	}

	var removed store.WebhookRecord
	if err := update(func(tx store.Tx) (err error) { removed, err = tx.DeleteWebhook("a1"); return err }); err != nil || removed.URL != w.URL {
		t.Fatalf("DeleteWebhook = %+v, %v", removed, err)
	}
	if err := update(func(tx store.Tx) error { _, err := tx.DeleteWebhook("a1"); return err }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := update(func(tx store.Tx) error { return tx.AdvanceCursor(target, 10) }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cursor of a removed webhook: %v", err)
	}
	if fs, err := s.DeliveryFailures(ctx, target); err != nil || len(fs) != 0 {
		t.Fatalf("dead letters of a removed webhook: %d, %v", len(fs), err)
	}
	if err := update(func(tx store.Tx) error { _, err := tx.TakeFailures(target, 0); return err }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TakeFailures of a removed webhook: %v", err)
	}

	for _, start := range []int64{5, 3} {
		var at int64
		if err := update(func(tx store.Tx) (err error) { at, err = tx.StartCursor(api.EmailTarget, start); return err }); err != nil || at != 5 {
			t.Fatalf("StartCursor(%d) = %d, %v; want 5", start, at, err)
		}
	}
}
