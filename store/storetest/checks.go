package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// testChecks: a check round-trips whole and its name is unique; removing it forgets its
// results; a generation bump moves only the named live nodes; results and buckets written in a
// batch replace their own and read back; pruning forgets old buckets of one width only.
func testChecks(t *testing.T, s store.Store) {
	ctx := context.Background()
	update := func(fn func(store.Tx) error) error { return s.Update(ctx, fn) }
	addSite(t, s, "ams", 1)
	n1, n2 := enroll(t, s, "ams", "n1"), enroll(t, s, "ams", "n2")
	c := api.CheckSpec{Name: "disk-root", Selector: "role=mirror", Disk: "/", Warn: "10%", Crit: "5%",
		Interval: api.Duration(time.Minute), Retries: 3, CreatedAt: ptr(t0)}
	if err := update(func(tx store.Tx) error { return tx.InsertCheck(c) }); err != nil {
		t.Fatal(err)
	}
	if err := update(func(tx store.Tx) error { return tx.InsertCheck(c) }); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second insert: %v", err)
	}
	if got, err := s.Checks(ctx); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], c) {
		t.Fatalf("checks = %+v, %v; want %+v", got, err, c)
	}
	if err := update(func(tx store.Tx) error { return tx.BumpGenerations([]string{"n1", "nobody"}) }); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Node(ctx, "n1"); n.Generation != n1.Generation+1 {
		t.Fatalf("n1 at generation %d, want %d", n.Generation, n1.Generation+1)
	}
	if n, _ := s.Node(ctx, "n2"); n.Generation != n2.Generation {
		t.Fatalf("n2 moved to generation %d", n.Generation)
	}

	ok := api.NodeCheck{Node: "n1", CheckResult: api.CheckResult{Check: "disk-root", State: api.CheckOK, Hard: true,
		Output: "DISK OK", Perf: []api.CheckPerf{{Label: "/", Value: 41.5, UOM: "%", Min: ptr(0.0)}}, Time: t0, Duration: api.Duration(time.Millisecond)}}
	crit := ok
	crit.State, crit.Output = api.CheckCritical, "DISK CRITICAL"
	app := api.NodeCheck{Node: "n2", CheckResult: api.CheckResult{Check: "web/http", App: "web", State: api.CheckWarning, Time: t0}}
	b := store.CheckBucket{Node: "n1", Check: "disk-root", CheckBucket: api.CheckBucket{Start: t0, Width: api.Duration(time.Minute),
		Worst: api.CheckWarning, Count: 2, Perf: []api.PerfStats{{Label: "/", Min: 1, Avg: 2, Max: 3}}}}
	old := b
	old.Start = t0.Add(-time.Hour)
	hour := b
	hour.Width, hour.Start = api.Duration(time.Hour), t0.Add(-2*time.Hour)
	if err := s.WriteChecks(ctx, []api.NodeCheck{ok, app}, []store.CheckBucket{b, old, hour}); err != nil {
		t.Fatal(err)
	}
	if err := update(func(tx store.Tx) error { return tx.PutCheckResult(crit) }); err != nil {
		t.Fatal(err)
	}
	b.Count, b.Worst = 3, api.CheckCritical
	if err := s.WriteChecks(ctx, nil, []store.CheckBucket{b}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CheckResults(ctx); err != nil || !reflect.DeepEqual(got, []api.NodeCheck{crit, app}) {
		t.Fatalf("results = %+v, %v", got, err)
	}
	got, err := s.CheckHistory(ctx, "n1", "disk-root", time.Minute, t0.Add(-2*time.Hour))
	if err != nil || !reflect.DeepEqual(got, []api.CheckBucket{old.CheckBucket, b.CheckBucket}) {
		t.Fatalf("history = %+v, %v", got, err)
	}
	if n, err := s.PruneCheckHistory(ctx, time.Minute, t0.Add(-time.Minute)); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	if got, _ := s.CheckHistory(ctx, "n1", "disk-root", time.Hour, time.Time{}); len(got) != 1 {
		t.Fatalf("hour buckets after pruning minutes: %+v", got)
	}

	if err := update(func(tx store.Tx) error { return tx.DeleteCheck("disk-root") }); err != nil {
		t.Fatal(err)
	}
	if err := update(func(tx store.Tx) error { return tx.DeleteCheck("disk-root") }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if got, err := s.CheckResults(ctx); err != nil || !reflect.DeepEqual(got, []api.NodeCheck{app}) {
		t.Fatalf("results after removal = %+v, %v", got, err)
	}
	if err := update(func(tx store.Tx) error { return tx.DeleteNodeResults([]string{"n2", "n9"}) }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CheckResults(ctx); err != nil || len(got) != 0 {
		t.Fatalf("results after the node's removal = %+v, %v", got, err)
	}
}

// testAlerts: an alert round-trips; one node's check has one open alert at a time; updates
// ack and clear it; Alerts lists the open ones, or all with the open first.
func testAlerts(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := api.Alert{Node: "n1", Check: "disk-root", State: api.CheckCritical, Since: t0, Output: "DISK CRITICAL"}
	var first, second int64
	err := s.Update(ctx, func(tx store.Tx) (err error) {
		if _, err := tx.OpenAlert("n1", "disk-root"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("open alert before any: %v", err)
		}
		if first, err = tx.InsertAlert(a); err != nil {
			return err
		}
		got, err := tx.OpenAlert("n1", "disk-root")
		a.ID = first
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("open alert = %+v, %v; want %+v", got, err, a)
		}
		a.ClearedAt = ptr(t0.Add(time.Minute))
		if err := tx.UpdateAlert(a); err != nil {
			return err
		}
		b := api.Alert{Node: "n1", Check: "disk-root", State: api.CheckWarning, Since: t0.Add(2 * time.Minute), Output: "low",
			AckedBy: "token:abc", AckedAt: ptr(t0.Add(3 * time.Minute)), Comment: "known"}
		if second, err = tx.InsertAlert(b); err != nil {
			return err
		}
		if got, err := tx.Alert(second); err != nil || got.AckedBy != "token:abc" || !got.AckedAt.Equal(t0.Add(3*time.Minute)) {
			t.Errorf("alert %d = %+v, %v", second, got, err)
		}
		if err := tx.UpdateAlert(api.Alert{ID: 999}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update of no alert: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		for _, a := range []api.Alert{{Node: "n2", Check: "disk-root", State: api.CheckWarning, Since: t0}, {Node: "n2", Check: "load", State: api.CheckCritical, Since: t0},
			{Node: "n3", Check: "load", State: api.CheckCritical, Since: t0}} {
			if _, err := tx.InsertAlert(a); err != nil {
				return err
			}
		}
		if got, err := tx.ClearAlerts([]string{}, "", t0); err != nil || len(got) != 0 {
			t.Errorf("clearing for no node: %+v, %v", got, err)
		}
		got, err := tx.ClearAlerts(nil, "load", t0)
		if err != nil || len(got) != 2 || got[0].Node != "n2" || got[1].Node != "n3" || got[0].ClearedAt != nil {
			t.Errorf("clearing load everywhere: %+v, %v", got, err)
		}
		got, err = tx.ClearAlerts([]string{"n2", "n9"}, "", t0)
		if err != nil || len(got) != 1 || got[0].Check != "disk-root" {
			t.Errorf("clearing n2's: %+v, %v", got, err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	open, err := s.Alerts(ctx, false)
	if err != nil || len(open) != 1 || open[0].ID != second {
		t.Fatalf("open alerts = %+v, %v", open, err)
	}
	all, err := s.Alerts(ctx, true)
	if err != nil || len(all) != 5 || all[0].ID != second || !reflect.DeepEqual(all[4], a) {
		t.Fatalf("all alerts = %+v, %v", all, err)
	}
}
