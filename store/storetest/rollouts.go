package storetest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// testRollouts: a rollout round-trips whole, with its nodes' progress; an update writes the
// nodes it is given, keeps the others and moves the revision on; OpenRollouts (in a transaction
// and outside one) and OpenRolloutIDs find only those still open; and a rollout's assignment
// changes a node again only for another version or attempt.
func testRollouts(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	enroll(t, s, "ams", "n1")
	enroll(t, s, "ams", "n2")
	wake := t0.Add(time.Hour)
	rec := store.RolloutRecord{App: "hello", Version: "1.1.0", Policy: "minor", Plan: []byte(`{"waves":[]}`), Progress: []byte(`{"state":"running"}`),
		State: "running", Open: true, Wake: &wake, CreatedAt: t0, CreatedBy: "token:abc", UpdatedAt: t0,
		Nodes: map[string][]byte{"n1": []byte(`{"state":"pending"}`), "n2": []byte(`{"wave":1,"state":"pending"}`)}, Rev: 1}
	var ids []int64
	err := s.Update(ctx, func(tx store.Tx) error {
		for _, app := range []string{"hello", "other"} {
			r := rec
			r.App = app
			id, err := tx.InsertRollout(r)
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
	got, err := s.Rollout(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	want := rec
	want.ID = ids[0]
	if !equalRollout(got, want) {
		t.Fatalf("read back %+v\nwant %+v", got, want)
	}
	if _, err := s.Rollout(ctx, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown rollout: %v", err)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		r, err := tx.Rollout(ids[0])
		if err != nil {
			return err
		}
		r.Progress, r.State, r.Open, r.Wake, r.UpdatedAt = []byte(`{"state":"completed"}`), "completed", false, nil, t0.Add(time.Minute)
		r.Nodes = map[string][]byte{"n1": []byte(`{"state":"done"}`)}
		if rev, err := tx.UpdateRollout(r); err != nil || rev != 2 {
			t.Errorf("update: revision %d, %v", rev, err)
		}
		if rev, open, err := tx.RolloutRev(ids[0]); err != nil || rev != 2 || open {
			t.Errorf("RolloutRev after the update: %d %v %v", rev, open, err)
		}
		if _, _, err := tx.RolloutRev(9999); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RolloutRev of an unknown rollout: %v", err)
		}
		if _, err := tx.UpdateRollout(store.RolloutRecord{ID: 9999}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update of an unknown rollout: %v", err)
		}
		open, err := tx.OpenRollouts("")
		if err != nil || len(open) != 1 || open[0].ID != ids[1] {
			t.Errorf("open rollouts %+v, %v", open, err)
		}
		if open, err := tx.OpenRollouts("hello"); err != nil || len(open) != 0 {
			t.Errorf("open rollouts of hello %+v, %v", open, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = s.Rollout(ctx, ids[0])
	if err != nil || got.State != "completed" || got.Open || got.Wake != nil || string(got.Progress) != `{"state":"completed"}` || !got.UpdatedAt.Equal(t0.Add(time.Minute)) ||
		got.Rev != 2 || len(got.Nodes) != 2 || string(got.Nodes["n1"]) != `{"state":"done"}` || string(got.Nodes["n2"]) != `{"wave":1,"state":"pending"}` {
		t.Fatalf("after update %+v, %v", got, err)
	}
	if open, err := s.OpenRolloutIDs(ctx); err != nil || !slices.Equal(open, ids[1:]) {
		t.Fatalf("OpenRolloutIDs = %v, %v", open, err)
	}
	if open, err := s.OpenRollouts(ctx, ""); err != nil || len(open) != 1 || !equalRollout(open[0], withID(rec, "other", ids[1])) {
		t.Fatalf("open rollouts outside a transaction %+v, %v", open, err)
	}
	if open, err := s.OpenRollouts(ctx, "hello"); err != nil || len(open) != 0 {
		t.Fatalf("open rollouts of hello outside a transaction %+v, %v", open, err)
	}
	list, err := s.Rollouts(ctx, "")
	if err != nil || len(list) != 2 || list[0].ID != ids[1] {
		t.Fatalf("list %+v, %v", list, err)
	}
	if list, err := s.Rollouts(ctx, "hello"); err != nil || len(list) != 1 || list[0].ID != ids[0] {
		t.Fatalf("list of hello %+v, %v", list, err)
	}

	assign := func(version string, attempt int64) []string {
		t.Helper()
		var changed []string
		err := s.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.Release("hello", version); errors.Is(err, store.ErrNotFound) {
				if err := tx.InsertRelease(api.Release{App: "hello", Version: version, Class: "minor", SHA256: "sum" + version, Size: 7,
					CreatedAt: t0, Manifest: map[string]any{}}); err != nil {
					return err
				}
			}
			var err error
			changed, err = tx.AssignRollout([]string{"n1", "n2", "ghost"}, "hello", version, store.RolloutTerms{Rollout: ids[0], Attempt: attempt, MinHealthyTime: time.Second, HealthyDeadline: time.Minute}, t0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(changed)
		return changed
	}
	if got := assign("1.1.0", 0); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("first assignment changed %v", got)
	}
	if got := assign("1.1.0", 0); len(got) != 0 {
		t.Fatalf("the same assignment again changed %v", got)
	}
	if got := assign("1.1.0", 1); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("a new attempt changed %v", got)
	}
	n, err := s.Node(ctx, "n1")
	if err != nil || len(n.Assigned) != 1 {
		t.Fatalf("n1 %+v %v", n, err)
	}
	if a := n.Assigned[0]; a.Version != "1.1.0" || a.Rollout != ids[0] || a.Attempt != 1 || a.Channel != "" || a.MinHealthyTime != time.Second || a.HealthyDeadline != time.Minute {
		t.Fatalf("assignment %+v", a)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.AssignRollout([]string{"n1"}, "hello", "9.9.9", store.RolloutTerms{Rollout: ids[0]}, t0)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("assignment of an unknown release: %v", err)
	}
}

func equalRollout(a, b store.RolloutRecord) bool {
	wakeEq := (a.Wake == nil) == (b.Wake == nil) && (a.Wake == nil || a.Wake.Equal(*b.Wake))
	return a.ID == b.ID && a.App == b.App && a.Version == b.Version && a.Policy == b.Policy && string(a.Plan) == string(b.Plan) &&
		string(a.Progress) == string(b.Progress) && a.State == b.State && a.Open == b.Open && wakeEq &&
		a.CreatedAt.Equal(b.CreatedAt) && a.CreatedBy == b.CreatedBy && a.UpdatedAt.Equal(b.UpdatedAt) && a.Rev == b.Rev &&
		maps.EqualFunc(a.Nodes, b.Nodes, bytes.Equal)
}

// withID is rec of app as stored under id.
func withID(rec store.RolloutRecord, app string, id int64) store.RolloutRecord {
	rec.App, rec.ID = app, id
	return rec
}
