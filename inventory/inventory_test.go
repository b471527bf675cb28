package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/store"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// fleet returns the inventory over a fresh SQLite store with site ams and nodes enrolled with
// the given labels.
func fleet(t *testing.T, nodes map[string]map[string]string) (*inventory.Service, store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv := inventory.New(st, clock.NewFake(t0))
	if _, _, err := inv.AddSite(ctx, api.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	uses := len(nodes)
	if _, err := st.CreateToken(ctx, store.TokenRecord{ID: "t", SecretHash: "h", Kind: store.KindEnroll, Site: "ams", UsesLeft: &uses, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for name, lbl := range nodes {
		if _, _, err := st.EnrollNode(ctx, "t", "h", store.NodeRecord{Name: name, PublicKey: "key-" + name, Labels: lbl}, t0); err != nil {
			t.Fatal(err)
		}
	}
	return inv, st
}

func names(nodes []api.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return fmt.Sprint(out)
}

// Selection: negations, implicit site and tier labels, status, and refusals of bad queries.
func TestSelect(t *testing.T) {
	inv, st := fleet(t, map[string]map[string]string{
		"d1": {"role": "depot"},
		"m1": {"role": "mirror", "zone": "a"},
		"x1": nil,
	})
	ctx := context.Background()
	if _, err := st.RevokeNode(ctx, "x1", t0); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[inventory.Query]string{
		{Selector: "role!=mirror"}:         "[d1]",
		{Selector: "!zone"}:                "[d1]",
		{Selector: "site=ams,tier=1,zone"}: "[m1]",
		{Status: api.StatusRevoked}:        "[x1]",
		{Site: "gva"}:                      "[]",
	} {
		got, err := inv.Select(ctx, q)
		if err != nil || names(got) != want {
			t.Errorf("%+v selected %s (%v), want %s", q, names(got), err, want)
		}
	}
	for _, q := range []inventory.Query{{Selector: "role in (x"}, {Status: "sleeping"}} {
		if _, err := inv.Select(ctx, q); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("%+v: %v, want an invalid query", q, err)
		}
	}
}

// Label changes: bad changes are refused before anything is written; a selector change
// touches only what it selects; a node takes a change only when its labels move.
func TestLabel(t *testing.T) {
	inv, st := fleet(t, map[string]map[string]string{"d1": {"role": "depot"}, "m1": {"role": "mirror"}})
	ctx := context.Background()
	last := func() int64 {
		id, err := st.LastEventID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := last()
	for _, c := range []api.LabelChange{
		{},
		{Set: map[string]string{"Bad Key": "x"}},
		{Set: map[string]string{"zone": "a"}, Remove: []string{"zone"}},
		{Selector: "role=depot", Set: map[string]string{"zone": "a"}}, // a selector on one node
	} {
		if _, _, err := inv.LabelNode(ctx, "d1", c); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("LabelNode %+v: %v, want invalid", c, err)
		}
	}
	if _, _, err := inv.LabelSelected(ctx, api.LabelChange{Set: map[string]string{"zone": "a"}}); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("LabelSelected without a selector: %v", err)
	}
	if last() != before {
		t.Fatal("refused changes wrote events")
	}
	res, evs, err := inv.LabelSelected(ctx, api.LabelChange{Selector: "role=mirror", Set: map[string]string{"zone": "b"}})
	if err != nil || fmt.Sprint(res.Nodes) != "[m1]" || len(evs) != 1 || evs[0].Type != api.EventNodeLabeled {
		t.Fatalf("LabelSelected: %+v %+v %v", res, evs, err)
	}
	if res, evs, err := inv.LabelNode(ctx, "m1", api.LabelChange{Set: map[string]string{"zone": "b"}}); err != nil || len(res.Nodes) != 0 || len(evs) != 0 {
		t.Fatalf("a change that changes nothing: %+v %+v %v", res, evs, err)
	}
	if _, _, err := inv.LabelNode(ctx, "nope", api.LabelChange{Set: map[string]string{"zone": "b"}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown node: %v", err)
	}
}

// Sites: refusals of bad sites change nothing; a site with live nodes goes only by force,
// revoking them.
func TestSites(t *testing.T) {
	inv, st := fleet(t, map[string]map[string]string{"n1": nil})
	ctx := context.Background()
	lat, far := 52.0, 200.0
	for _, a := range []api.SiteAdd{
		{Name: "Bad Name", Tier: 1},
		{Name: "gva", Tier: 4},
		{Name: "gva", Tier: 2, Lat: &lat},
		{Name: "gva", Tier: 2, Lat: &lat, Lon: &far},
	} {
		if _, _, err := inv.AddSite(ctx, a); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("AddSite %+v: %v, want invalid", a, err)
		}
	}
	if sites, _ := st.Sites(ctx); len(sites) != 1 {
		t.Fatalf("refused sites were stored: %+v", sites)
	}
	if _, err := inv.RemoveSite(ctx, "ams", false); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("removing a site with a live node: %v", err)
	}
	evs, err := inv.RemoveSite(ctx, "ams", true)
	if err != nil || len(evs) != 2 || evs[0].Type != api.EventNodeRevoked || evs[1].Type != api.EventSiteRemoved {
		t.Fatalf("forced removal: %+v %v", evs, err)
	}
}
