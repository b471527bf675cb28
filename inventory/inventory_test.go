package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/internal/backend"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

func TestMain(m *testing.M) { os.Exit(backend.Main(m)) }

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// fleet returns the inventory over st with site ams and nodes enrolled with the given labels.
func fleet(t *testing.T, st store.Store, nodes map[string]map[string]string) *inventory.Service {
	t.Helper()
	ctx := context.Background()
	inv := inventory.New(st, clock.NewFake(t0))
	if _, _, err := inv.AddSite(ctx, api.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	uses := len(nodes)
	if _, err := inv.CreateToken(ctx, store.TokenRecord{ID: "t", SecretHash: "h", Kind: store.KindEnroll, Site: "ams", UsesLeft: &uses, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for name, lbl := range nodes {
		if _, _, err := inv.Enroll(ctx, "t", "h", store.NodeRecord{Name: name, PublicKey: "key-" + name, Labels: lbl}); err != nil {
			t.Fatal(err)
		}
	}
	return inv
}

func isKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: %v; want %v", what, err, kind)
	}
}

// lastEventID is the id of st's newest event.
func lastEventID(t *testing.T, st store.Store) int64 {
	t.Helper()
	id, err := st.LastEventID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func names(nodes []api.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return fmt.Sprint(out)
}

// Selection: negations, implicit site and tier labels, status, and refusals of bad queries.
func TestSelect(t *testing.T) { backend.Each(t, testSelect) }

func testSelect(t *testing.T, st store.Store) {
	inv := fleet(t, st, map[string]map[string]string{
		"d1": {"role": "depot"},
		"m1": {"role": "mirror", "zone": "a"},
		"x1": nil,
	})
	ctx := context.Background()
	if _, err := inv.RemoveNode(ctx, "x1"); err != nil {
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

// A site's labels are what a selector sees on each of its nodes, under the node's own labels
// (a node's own label wins) and the implicit site and tier; every selection sees them
// (Select, LabelSelected), and relabelling a site moves no node's generation.
func TestSelectSiteLabels(t *testing.T) { backend.Each(t, testSelectSiteLabels) }

func testSelectSiteLabels(t *testing.T, st store.Store) {
	inv := fleet(t, st, map[string]map[string]string{
		"a1": {"role": "mirror"},
		"a2": {"role": "depot", "pilot": "none"}, // its own label wins over its site's
	})
	ctx := context.Background()
	a1, _ := st.Node(ctx, "a1")
	if _, _, err := inv.LabelSite(ctx, "ams", api.LabelChange{Set: map[string]string{"pilot": "breaking", "role": "site-wide"}}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[inventory.Query]string{
		{Selector: "pilot=breaking"}:              "[a1]",
		{Selector: "pilot=none"}:                  "[a2]",
		{Selector: "role=mirror"}:                 "[a1]",
		{Selector: "role=site-wide"}:              "[]",
		{Selector: "pilot,site=ams,tier=1"}:       "[a1 a2]",
		{Selector: "pilot!=breaking"}:             "[a2]",
		{Selector: "site=ams,pilot=breaking,!zz"}: "[a1]",
		{Site: "ams", Selector: "pilot=breaking"}: "[a1]",
	} {
		got, err := inv.Select(ctx, q)
		if err != nil || names(got) != want {
			t.Errorf("%+v selected %s (%v), want %s", q, names(got), err, want)
		}
	}
	if n, _ := st.Node(ctx, "a1"); n.Generation != a1.Generation {
		t.Fatalf("relabelling a site moved its node's generation: %d → %d", a1.Generation, n.Generation)
	}
	l := inventory.Labels(api.Node{Site: "ams", Tier: 1, SiteLabels: map[string]string{"pilot": "breaking", "zone": "eu"}, Labels: map[string]string{"zone": "a"}})
	if l.String() != "pilot=breaking,site=ams,tier=1,zone=a" {
		t.Fatalf("Labels = %s", l)
	}
	res, _, err := inv.LabelSelected(ctx, api.LabelChange{Selector: "pilot=breaking", Set: map[string]string{"wave": "1"}})
	if err != nil || fmt.Sprint(res.Nodes) != "[a1]" {
		t.Fatalf("LabelSelected by a site label: %+v %v", res, err)
	}
}

// Site labels: bad changes (the rules of node labels, reserved keys, a selector, an unknown
// site) are refused with nothing written; a change writes the site's labels and one
// site.labeled event with its actor, what it set and removed; one that changes nothing writes
// nothing.
func TestLabelSite(t *testing.T) { backend.Each(t, testLabelSite) }

func testLabelSite(t *testing.T, st store.Store) {
	inv := fleet(t, st, map[string]map[string]string{"a1": nil})
	ctx := store.WithActor(context.Background(), store.Actor{ID: "token:op1", Role: api.RoleAdmin, Source: "10.0.0.1"})
	last := func() int64 { return lastEventID(t, st) }
	before := last()
	for _, c := range []api.LabelChange{
		{},
		{Set: map[string]string{"Bad Key": "x"}},
		{Set: map[string]string{"zone": "bad value"}},
		{Set: map[string]string{"site": "gva"}},
		{Set: map[string]string{"tier": "2"}},
		{Set: map[string]string{"zone": "a"}, Remove: []string{"zone"}},
		{Remove: []string{"Bad"}},
		{Selector: "site=ams", Set: map[string]string{"zone": "a"}},
	} {
		if _, _, err := inv.LabelSite(ctx, "ams", c); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("LabelSite %+v: %v, want invalid", c, err)
		}
	}
	_, _, err := inv.LabelSite(ctx, "nope", api.LabelChange{Set: map[string]string{"zone": "a"}})
	isKind(t, "an unknown site", err, fault.ErrNotFound)
	if last() != before {
		t.Fatal("refused changes wrote events")
	}

	site, evs, err := inv.LabelSite(ctx, "ams", api.LabelChange{Set: map[string]string{"pilot": "breaking", "zone": "eu"}})
	if err != nil || fmt.Sprint(site.Labels) != "map[pilot:breaking zone:eu]" || site.Nodes[api.StatusUp] != 1 || len(evs) != 1 {
		t.Fatalf("LabelSite = %+v %+v %v", site, evs, err)
	}
	site, evs, err = inv.LabelSite(ctx, "ams", api.LabelChange{Set: map[string]string{"pilot": "breaking", "zone": "us"}, Remove: []string{"gone", "pilot2"}})
	if err != nil || fmt.Sprint(site.Labels) != "map[pilot:breaking zone:us]" || len(evs) != 1 {
		t.Fatalf("LabelSite = %+v %+v %v", site, evs, err)
	}
	e := evs[0]
	var p api.SiteLabeled
	if e.Type != api.EventSiteLabeled || e.Subject != "ams" || e.Actor != "token:op1" || e.Role != api.RoleAdmin || e.Source != "10.0.0.1" ||
		e.Decode(&p) != nil || fmt.Sprint(p.Set) != "map[zone:us]" || len(p.Removed) != 0 || fmt.Sprint(p.Labels) != "map[pilot:breaking zone:us]" {
		t.Fatalf("site.labeled event = %+v %s", e, e.Data)
	}
	_, evs, err = inv.LabelSite(ctx, "ams", api.LabelChange{Remove: []string{"zone", "pilot"}})
	var p2 api.SiteLabeled
	if err != nil || len(evs) != 1 || evs[0].Decode(&p2) != nil || p2.Set != nil || fmt.Sprint(p2.Removed) != "[pilot zone]" || len(p2.Labels) != 0 {
		t.Fatalf("removing every label: %+v %v", evs, err)
	}
	before = last()
	if site, evs, err := inv.LabelSite(ctx, "ams", api.LabelChange{Remove: []string{"zone"}}); err != nil || len(evs) != 0 || len(site.Labels) != 0 {
		t.Fatalf("a change that changes nothing: %+v %+v %v", site, evs, err)
	}
	if last() != before {
		t.Fatal("a change that changes nothing wrote an event")
	}

	// A site carries at most labels.MaxLabels, as a node does.
	many := map[string]string{}
	for i := 0; i <= labels.MaxLabels; i++ {
		many[fmt.Sprintf("k%d", i)] = "x"
	}
	if _, _, err := inv.LabelSite(ctx, "ams", api.LabelChange{Set: many}); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("more labels than the bound at once: %v", err)
	}
	delete(many, "k0")
	if _, _, err := inv.LabelSite(ctx, "ams", api.LabelChange{Set: many}); err != nil {
		t.Fatalf("labels up to the bound: %v", err)
	}
	_, _, err = inv.LabelSite(ctx, "ams", api.LabelChange{Set: map[string]string{"k0": "x"}})
	isKind(t, "labels past the bound", err, fault.ErrConflict)
}

// Label changes: bad changes are refused before anything is written; a selector change
// touches only what it selects; a node takes a change only when its labels move.
func TestLabel(t *testing.T) { backend.Each(t, testLabel) }

func testLabel(t *testing.T, st store.Store) {
	inv := fleet(t, st, map[string]map[string]string{"d1": {"role": "depot"}, "m1": {"role": "mirror"}})
	ctx := context.Background()
	last := func() int64 { return lastEventID(t, st) }
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
	if _, _, err := inv.LabelNode(ctx, "nope", api.LabelChange{Set: map[string]string{"zone": "b"}}); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("an unknown node: %v", err)
	}

	// Many nodes at once: one missing node fails the whole change; the changed nodes come back
	// with their new labels, generation and assignments.
	_, _, err = inv.ChangeLabels(ctx, []string{"d1", "zz"}, map[string]string{"zone": "c"}, nil)
	isKind(t, "a change naming a missing node", err, fault.ErrNotFound)
	if n, _ := st.Node(ctx, "d1"); n.Labels["zone"] != "" {
		t.Fatalf("a failed change was partly applied: %+v", n)
	}
	d1, _ := st.Node(ctx, "d1")
	nodes, evs, err := inv.ChangeLabels(ctx, []string{"d1", "m1", "d1"}, map[string]string{"zone": "c"}, []string{"role"})
	if err != nil || len(nodes) != 2 || len(evs) != 2 || nodes[0].Name != "d1" || nodes[0].Generation != d1.Generation+1 ||
		fmt.Sprint(nodes[0].Labels) != "map[zone:c]" {
		t.Fatalf("ChangeLabels = %+v %+v %v", nodes, evs, err)
	}
	var p api.NodeLabeled
	if evs[0].Decode(&p) != nil || p.Generation != nodes[0].Generation || fmt.Sprint(p.Labels) != "map[zone:c]" {
		t.Fatalf("node.labeled event: %s", evs[0].Data)
	}
	// A node carries at most labels.MaxLabels: changes that would pass it fail whole, in
	// however many calls they come.
	many := func(prefix string, n int) map[string]string {
		m := map[string]string{}
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("%s%d", prefix, i)] = "x"
		}
		return m
	}
	if _, _, err := inv.ChangeLabels(ctx, []string{"d1", "m1"}, many("a", labels.MaxLabels-1), nil); err != nil {
		t.Fatalf("labels up to the bound: %v", err)
	}
	_, _, err = inv.ChangeLabels(ctx, []string{"m1", "d1"}, many("b", 2), nil)
	isKind(t, "labels past the bound", err, fault.ErrConflict)
	if n, _ := st.Node(ctx, "m1"); len(n.Labels) > labels.MaxLabels || n.Labels["b0"] != "" {
		t.Fatalf("a change past the bound was partly applied: %d labels", len(n.Labels))
	}
}

// Sites: refusals of bad sites change nothing; a site with live nodes goes only by force,
// revoking them.
func TestSites(t *testing.T) { backend.Each(t, testSites) }

func testSites(t *testing.T, st store.Store) {
	inv := fleet(t, st, map[string]map[string]string{"n1": nil})
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
	_, _, err := inv.AddSite(ctx, api.SiteAdd{Name: "ams", Tier: 2})
	isKind(t, "a site again", err, fault.ErrConflict)
	_, err = inv.RemoveSite(ctx, "ams", false)
	isKind(t, "removing a site with a live node", err, fault.ErrConflict)
	if st, _ := st.Site(ctx, "ams"); st.Nodes[api.StatusUp] != 1 {
		t.Fatalf("site after a refused removal: %+v", st)
	}
	evs, err := inv.RemoveSite(ctx, "ams", true)
	if err != nil || len(evs) != 2 || evs[0].Type != api.EventNodeRevoked || evs[0].Subject != "n1" || evs[1].Type != api.EventSiteRemoved || evs[1].ID != evs[0].ID+1 {
		t.Fatalf("forced removal: %+v %v", evs, err)
	}
	if _, err := st.Node(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node of a removed site: %v", err)
	}
	_, err = inv.RemoveSite(ctx, "ams", false)
	isKind(t, "removing a missing site", err, store.ErrNotFound)
}

// Enrollment spends a use of a valid token; forged, expired, used-up and revoked tokens, taken
// names and enrolled keys are refused; a revoked node's name enrolls again with a new key.
func TestEnroll(t *testing.T) { backend.Each(t, testEnroll) }

func testEnroll(t *testing.T, st store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	inv := inventory.New(st, clk)
	if _, _, err := inv.AddSite(ctx, api.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(time.Hour)
	if _, err := inv.CreateToken(ctx, store.TokenRecord{ID: "e1", SecretHash: "h1", Kind: store.KindEnroll, Site: "ams", UsesLeft: ptr(2), ExpiresAt: &exp, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	_, err := inv.CreateToken(ctx, store.TokenRecord{ID: "e2", SecretHash: "h2", Kind: store.KindEnroll, Site: "nope", CreatedAt: t0})
	isKind(t, "a token for a missing site", err, store.ErrNotFound)
	if _, err := inv.CreateToken(ctx, store.TokenRecord{ID: "o1", SecretHash: "h1", Kind: store.KindOperator, Role: api.RoleAdmin, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	rec := func(name string) store.NodeRecord { return store.NodeRecord{Name: name, PublicKey: "pk-" + name} }
	enroll := func(tok, hash string, r store.NodeRecord) (api.Node, api.Event, error) {
		return inv.Enroll(ctx, tok, hash, r)
	}
	_, _, err = enroll("e1", "wrong", rec("a"))
	isKind(t, "a forged secret", err, fault.ErrUnauthorized)
	_, _, err = enroll("o1", "h1", rec("a"))
	isKind(t, "an operator token", err, fault.ErrUnauthorized)
	_, _, err = enroll("nope", "h1", rec("a"))
	isKind(t, "an unknown token", err, fault.ErrUnauthorized)
	n, ev, err := enroll("e1", "h1", rec("a"))
	if err != nil || n.Site != "ams" || n.Tier != 1 || n.Status != api.StatusUp || n.Generation != 1 || ev.Type != api.EventNodeEnrolled {
		t.Fatalf("enroll: %+v %+v %v", n, ev, err)
	}
	_, _, err = enroll("e1", "h1", rec("a"))
	isKind(t, "a taken name", err, fault.ErrConflict)
	_, _, err = enroll("e1", "h1", store.NodeRecord{Name: "b", PublicKey: "pk-a"})
	isKind(t, "an enrolled key", err, fault.ErrConflict)
	if tok, _ := st.Token(ctx, "e1"); *tok.UsesLeft != 1 {
		t.Fatalf("refused enrollments spent uses: %d left", *tok.UsesLeft)
	}
	if _, _, err := enroll("e1", "h1", rec("b")); err != nil {
		t.Fatal(err)
	}
	_, _, err = enroll("e1", "h1", rec("c"))
	isKind(t, "a used-up token", err, fault.ErrUnauthorized)

	// A revoked node's name can be enrolled again, with a new key.
	if _, err := inv.RemoveNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = inv.RemoveNode(ctx, "a")
	isKind(t, "remove twice", err, fault.ErrNotFound)
	if _, err := inv.CreateToken(ctx, store.TokenRecord{ID: "e3", SecretHash: "h3", Kind: store.KindEnroll, Site: "ams", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if n, _, err := enroll("e3", "h3", store.NodeRecord{Name: "a", PublicKey: "pk-a2"}); err != nil || n.PublicKey != "pk-a2" {
		t.Fatalf("re-enroll a revoked name: %+v %v", n, err)
	}
	if _, err := inv.RevokeToken(ctx, "e3"); err != nil {
		t.Fatal(err)
	}
	_, _, err = enroll("e3", "h3", rec("d"))
	isKind(t, "a revoked token", err, fault.ErrUnauthorized)
	_, err = inv.RevokeToken(ctx, "e3")
	isKind(t, "revoke a token twice", err, store.ErrNotFound)

	// Expiry is on the clock.
	if _, err := inv.CreateToken(ctx, store.TokenRecord{ID: "e4", SecretHash: "h4", Kind: store.KindEnroll, Site: "ams", ExpiresAt: &exp, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	_, _, err = enroll("e4", "h4", rec("e"))
	isKind(t, "an expired token", err, fault.ErrUnauthorized)
}

// Status moves between up and down with an event each time, and not at all when unchanged or
// for a revoked node.
func TestSetStatus(t *testing.T) { backend.Each(t, testSetStatus) }

func testSetStatus(t *testing.T, st store.Store) {
	ctx := context.Background()
	inv := fleet(t, st, map[string]map[string]string{"n1": nil, "n2": nil})
	ev, changed, err := inv.SetStatus(ctx, "n1", api.StatusDown)
	var p api.NodeStatusChanged
	if err != nil || !changed || ev.Type != api.EventNodeDown || ev.Decode(&p) != nil || p.From != api.StatusUp {
		t.Fatalf("down: %+v %v %v", ev, changed, err)
	}
	if _, changed, err := inv.SetStatus(ctx, "n1", api.StatusDown); err != nil || changed {
		t.Fatalf("down again: changed %v, %v", changed, err)
	}
	if ev, changed, _ := inv.SetStatus(ctx, "n1", api.StatusUp); !changed || ev.Type != api.EventNodeUp {
		t.Fatalf("up: %+v", ev)
	}
	if _, err := inv.RemoveNode(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, changed, err := inv.SetStatus(ctx, "n2", api.StatusUp); err != nil || changed {
		t.Fatalf("a revoked node came up: %v %v", changed, err)
	}
	_, _, err = inv.SetStatus(ctx, "nope", api.StatusUp)
	isKind(t, "an unknown node", err, fault.ErrNotFound)
}

func ptr[T any](v T) *T { return &v }

// Of many callers making "the" admin token at once (replicas starting together), one makes it
// and the others find it.
func TestCreateTokenUnless(t *testing.T) { backend.Each(t, testCreateTokenUnless) }

func testCreateTokenUnless(t *testing.T, st store.Store) {
	ctx := context.Background()
	inv := inventory.New(st, clock.NewFake(t0))
	isAdmin := func(t store.TokenRecord) bool { return t.Role == api.RoleAdmin && t.Description == "first" }
	const n = 8
	made := make(chan string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("admin-%d", i)
			found, ev, err := inv.CreateTokenUnless(ctx, store.TokenRecord{ID: id, SecretHash: "h", Kind: store.KindOperator, Role: api.RoleAdmin,
				CreatedAt: t0, Description: "first"}, isAdmin)
			switch {
			case err != nil:
				errs <- err
			case found == nil && ev.Type == api.EventTokenCreated:
				made <- id
			case found != nil && ev.ID == 0 && isAdmin(*found):
			default:
				errs <- fmt.Errorf("found %+v, event %+v", found, ev)
			}
		}()
	}
	wg.Wait()
	close(made)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(made) != 1 {
		t.Fatalf("%d callers made the token", len(made))
	}
	toks, err := st.Tokens(ctx)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens = %+v %v", toks, err)
	}
}
