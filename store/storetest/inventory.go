package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// The inventory's primitives store and read sites, tokens and nodes as they say, and refuse
// duplicates and unknown names without spoiling the transaction; the reads outside Update
// (Sites with node counts, Tokens, Node, last-seen times and facts) see what they wrote.
func testInventory(t *testing.T, s store.Store) {
	ctx := context.Background()
	update := func(fn func(tx store.Tx) error) {
		t.Helper()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	is := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v; want %v", what, err, want)
		}
	}
	exp := t0.Add(time.Hour)
	update(func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, Lat: ptr(52.37), Lon: ptr(4.9), Contact: "noc@ams", CreatedAt: t0}); err != nil {
			return err
		}
		is("a site again", tx.InsertSite(api.Site{Name: "ams", Tier: 2, CreatedAt: t0}), store.ErrExists)
		if err := tx.InsertSite(api.Site{Name: "gva", Tier: 3, CreatedAt: t0}); err != nil {
			return err
		}
		st, err := tx.Site("ams")
		if err != nil || st.Tier != 1 || *st.Lat != 52.37 || st.Contact != "noc@ams" || !st.CreatedAt.Equal(t0) {
			t.Fatalf("Site = %+v %v", st, err)
		}
		_, err = tx.Site("nope")
		is("an unknown site", err, store.ErrNotFound)

		if err := tx.InsertToken(store.TokenRecord{ID: "e1", SecretHash: "h1", Kind: store.KindEnroll, Site: "ams", UsesLeft: ptr(2), ExpiresAt: &exp, CreatedAt: t0, Description: "d"}); err != nil {
			return err
		}
		is("a token again", tx.InsertToken(store.TokenRecord{ID: "e1", SecretHash: "x", Kind: store.KindEnroll, Site: "ams", CreatedAt: t0}), store.ErrExists)
		is("a token of an unknown site", tx.InsertToken(store.TokenRecord{ID: "e2", SecretHash: "h", Kind: store.KindEnroll, Site: "nope", CreatedAt: t0}), store.ErrNotFound)
		if err := tx.InsertToken(store.TokenRecord{ID: "o1", SecretHash: "h", Kind: store.KindOperator, Role: api.RoleAdmin, CreatedAt: t0}); err != nil {
			return err
		}
		if err := tx.SpendToken("e1"); err != nil {
			return err
		}
		if err := tx.SpendToken("o1"); err != nil { // uses not counted: nothing to spend
			return err
		}
		is("spend an unknown token", tx.SpendToken("nope"), store.ErrNotFound)
		tok, err := tx.Token("e1")
		if err != nil || *tok.UsesLeft != 1 || !tok.ExpiresAt.Equal(exp) || tok.Site != "ams" || tok.SecretHash != "h1" || tok.Description != "d" {
			t.Fatalf("Token = %+v %v", tok, err)
		}
		if tok, err := tx.Token("o1"); err != nil || tok.UsesLeft != nil || tok.Role != api.RoleAdmin {
			t.Fatalf("operator token = %+v %v", tok, err)
		}
		is("delete an unknown token", tx.DeleteToken("nope"), store.ErrNotFound)
		if toks, err := tx.Tokens(); err != nil || len(toks) != 2 || toks[0].ID != "e1" || toks[1].ID != "o1" {
			t.Fatalf("Tokens = %+v %v", toks, err)
		}

		for _, n := range []string{"n1", "n2", "n3"} {
			if err := tx.InsertNode("ams", store.NodeRecord{Name: n, PublicKey: "pk-" + n, Labels: map[string]string{"role": "mirror"},
				Facts: api.Facts{Hostname: n}}, t0); err != nil {
				return err
			}
		}
		is("a live node's name again", tx.InsertNode("ams", store.NodeRecord{Name: "n1", PublicKey: "pk-x"}, t0), store.ErrExists)
		if name, err := tx.NodeWithKey("pk-n2"); err != nil || name != "n2" {
			t.Fatalf("NodeWithKey = %q %v", name, err)
		}
		_, err = tx.NodeWithKey("pk-none")
		is("an unknown key", err, store.ErrNotFound)
		if err := tx.SetNodeStatus("n3", api.StatusRevoked); err != nil {
			return err
		}
		is("status of an unknown node", tx.SetNodeStatus("nope", api.StatusDown), store.ErrNotFound)
		if names, err := tx.SiteNodes("ams"); err != nil || fmt.Sprint(names) != "[n1 n2]" {
			t.Fatalf("SiteNodes = %v %v", names, err)
		}
		// A revoked node's name is taken over, with a new key.
		if err := tx.InsertNode("ams", store.NodeRecord{Name: "n3", PublicKey: "pk-n3b"}, t0.Add(time.Minute)); err != nil {
			return err
		}
		if err := tx.SetLabels(map[string]map[string]string{"n1": {"zone": "b"}, "n2": {}}); err != nil {
			return err
		}
		nodes, err := tx.Nodes([]string{"n1", "n2", "n3", "ghost"})
		if err != nil || len(nodes) != 3 {
			t.Fatalf("Nodes = %+v %v", nodes, err)
		}
		if n := nodes["n1"]; fmt.Sprint(n.Labels) != "map[zone:b]" || n.Generation != 2 || n.Site != "ams" || n.Tier != 1 || n.Status != api.StatusUp || n.Facts.Hostname != "n1" {
			t.Fatalf("n1 = %+v", n)
		}
		if n := nodes["n2"]; len(n.Labels) != 0 || n.Generation != 2 {
			t.Fatalf("n2 = %+v", n)
		}
		if n := nodes["n3"]; n.PublicKey != "pk-n3b" || n.Status != api.StatusUp || n.Generation != 1 || !n.EnrolledAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("n3 after taking over a revoked name = %+v", n)
		}
		return nil
	})

	sites, err := s.Sites(ctx)
	if err != nil || len(sites) != 2 || sites[0].Name != "ams" || sites[0].Nodes[api.StatusUp] != 3 || sites[1].Tier != 3 {
		t.Fatalf("Sites = %+v %v", sites, err)
	}
	if toks, err := s.Tokens(ctx); err != nil || len(toks) != 2 {
		t.Fatalf("Tokens = %+v %v", toks, err)
	}
	update(func(tx store.Tx) error { return tx.SetNodeStatus("n2", api.StatusDown) })
	if st, err := s.Site(ctx, "ams"); err != nil || st.Nodes[api.StatusUp] != 2 || st.Nodes[api.StatusDown] != 1 {
		t.Fatalf("Site = %+v %v", st, err)
	}

	seen := t0.Add(time.Minute)
	if err := s.TouchNodes(ctx, map[string]time.Time{"n1": seen}); err != nil {
		t.Fatal(err)
	}
	f := api.Facts{Hostname: "h1", OS: "linux", CPUs: 8}
	if err := s.SetFacts(ctx, "n1", f); err != nil {
		t.Fatal(err)
	}
	n, err := s.Node(ctx, "n1")
	if err != nil || !n.LastSeen.Equal(seen) || n.Facts != f {
		t.Fatalf("node = %+v %v", n, err)
	}
	if err := s.SetFacts(ctx, "nope", f); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("facts of missing node: %v", err)
	}

	// Deleting a token or a site takes it away, the site with every node in it.
	update(func(tx store.Tx) error {
		if err := tx.DeleteToken("e1"); err != nil {
			return err
		}
		if err := tx.DeleteSite("ams"); err != nil {
			return err
		}
		is("delete an unknown site", tx.DeleteSite("nope"), store.ErrNotFound)
		return nil
	})
	if _, err := s.Node(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node of a removed site: %v", err)
	}
	if _, err := s.Token(ctx, "e1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted token: %v", err)
	}
}

// A site's labels are stored as given, replaced whole by SetSiteLabels, and read with the site
// (Site, Sites, Tx.Site) and under every node of the site (Node, Nodes, Tx.Nodes), whose own
// labels and generation they leave alone. An unknown site is refused without spoiling the
// transaction, and removing a site removes its labels.
func testSiteLabels(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, ctx, s, func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, Labels: map[string]string{"pilot": "minor"}, CreatedAt: t0}); err != nil {
			return err
		}
		return tx.InsertSite(api.Site{Name: "gva", Tier: 3, CreatedAt: t0})
	})
	n1 := enroll(t, s, "ams", "n1")
	enroll(t, s, "gva", "n2")
	if fmt.Sprint(n1.SiteLabels) != "map[pilot:minor]" || fmt.Sprint(n1.Labels) != "map[role:mirror]" {
		t.Fatalf("a node of a labelled site = %+v", n1)
	}

	update(t, ctx, s, func(tx store.Tx) error {
		err := tx.SetSiteLabels("nope", map[string]string{"a": "b"})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("labels of an unknown site: %v; want %v", err, store.ErrNotFound)
		}
		if err := tx.SetSiteLabels("ams", map[string]string{"pilot": "breaking", "zone": "eu"}); err != nil {
			return err
		}
		if st, err := tx.Site("ams"); err != nil || fmt.Sprint(st.Labels) != "map[pilot:breaking zone:eu]" {
			t.Fatalf("Tx.Site after SetSiteLabels = %+v %v", st, err)
		}
		nodes, err := tx.Nodes(nil)
		if err != nil || fmt.Sprint(nodes["n1"].SiteLabels) != "map[pilot:breaking zone:eu]" || len(nodes["n2"].SiteLabels) != 0 {
			t.Fatalf("Tx.Nodes after SetSiteLabels = %+v %v", nodes, err)
		}
		return nil
	})

	if st, err := s.Site(ctx, "ams"); err != nil || fmt.Sprint(st.Labels) != "map[pilot:breaking zone:eu]" || st.Nodes[api.StatusUp] != 1 {
		t.Fatalf("Site = %+v %v", st, err)
	}
	sites, err := s.Sites(ctx)
	if err != nil || len(sites) != 2 || fmt.Sprint(sites[0].Labels) != "map[pilot:breaking zone:eu]" || sites[1].Labels == nil || len(sites[1].Labels) != 0 {
		t.Fatalf("Sites = %+v %v", sites, err)
	}
	n, err := s.Node(ctx, "n1")
	if err != nil || fmt.Sprint(n.SiteLabels) != "map[pilot:breaking zone:eu]" || fmt.Sprint(n.Labels) != "map[role:mirror]" || n.Generation != n1.Generation {
		t.Fatalf("Node after its site was labelled = %+v %v (generation was %d)", n, err, n1.Generation)
	}
	all, err := s.Nodes(ctx)
	if err != nil || len(all) != 2 || fmt.Sprint(all[0].SiteLabels) != "map[pilot:breaking zone:eu]" || len(all[1].SiteLabels) != 0 {
		t.Fatalf("Nodes = %+v %v", all, err)
	}

	update(t, ctx, s, func(tx store.Tx) error { return tx.SetSiteLabels("ams", nil) })
	if st, err := s.Site(ctx, "ams"); err != nil || st.Labels == nil || len(st.Labels) != 0 {
		t.Fatalf("Site after its labels were cleared = %+v %v", st, err)
	}
	update(t, ctx, s, func(tx store.Tx) error { return tx.DeleteSite("ams") })
	update(t, ctx, s, func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 2, CreatedAt: t0}); err != nil {
			return err
		}
		if st, err := tx.Site("ams"); err != nil || len(st.Labels) != 0 {
			t.Fatalf("a site added again after its removal = %+v %v", st, err)
		}
		return nil
	})
}

// testAppCounts: nodes count by the app, version and state they report; revoked nodes do not.
func testAppCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	for _, n := range []string{"n1", "n2", "n3"} {
		enroll(t, s, "ams", n)
	}
	if got, err := s.AppCounts(ctx); err != nil || len(got) != 0 {
		t.Fatalf("no apps reported: %+v, %v", got, err)
	}
	running := api.NodeApp{App: "hello", Version: "1.0.0", State: api.AppStateRunning}
	err := s.Update(ctx, func(tx store.Tx) error {
		for node, apps := range map[string][]api.NodeApp{
			"n1": {running, {App: "mirror", Pending: "2.0.0"}},
			"n2": {running},
			"n3": {{App: "hello", Version: "1.1.0", State: api.AppStateFailed}},
		} {
			if err := tx.SetNodeApps(node, apps); err != nil {
				return err
			}
		}
		return tx.SetNodeStatus("n3", api.StatusRevoked)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.AppCounts(ctx)
	slices.SortFunc(got, func(a, b store.AppCount) int { return strings.Compare(a.App, b.App) })
	want := []store.AppCount{{App: "hello", Version: "1.0.0", State: api.AppStateRunning, Nodes: 2}, {App: "mirror", Nodes: 1}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("app counts %+v, %v; want %+v", got, err, want)
	}
}
