package rollout

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// The engine's copy of the nodes reads again what the change feed names, drops a node that is
// gone, and reads everything again every fullRead.
func TestSeenReadsWhatChanged(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	update := func(fn func(tx store.Tx) error) {
		t.Helper()
		if err := st.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	report := func(node, version string) {
		update(func(tx store.Tx) error {
			return tx.SetNodeApps(node, []api.NodeApp{{App: "hello", Version: version, State: api.AppStateRunning}})
		})
	}
	update(func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, CreatedAt: at}); err != nil {
			return err
		}
		for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
			if err := tx.InsertNode("ams", store.NodeRecord{Name: n, PublicKey: "key-" + n}, at); err != nil {
				return err
			}
		}
		return nil
	})
	version := func(nodes map[string]api.Node, name string) string {
		for _, a := range nodes[name].Apps {
			return a.Version
		}
		return ""
	}
	s := &seen{}
	nodes, err := s.nodes(ctx, st, at)
	if err != nil || len(nodes) != 6 {
		t.Fatalf("first read: %d nodes, %v; want 6", len(nodes), err)
	}

	report("a", "2.0.0")
	report("b", "2.0.0") // no event names b yet
	s.changed("a")
	s.changed("hello@2.0.0") // a subject that is no node
	nodes, err = s.nodes(ctx, st, at.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := version(nodes, "a"); got != "2.0.0" {
		t.Errorf("node a, named by an event: runs %q, want 2.0.0", got)
	}
	if got := version(nodes, "b"); got != "" {
		t.Errorf("node b, named by no event: read again before fullRead (%q)", got)
	}
	if _, ok := nodes["hello@2.0.0"]; ok || len(nodes) != 6 {
		t.Errorf("nodes after a partial read: %d, want the 6", len(nodes))
	}

	update(func(tx store.Tx) error { return tx.SetNodeStatus("c", api.StatusDown) })
	s.changed("c")
	if nodes, err = s.nodes(ctx, st, at.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if nodes["c"].Status != api.StatusDown {
		t.Errorf("node c: status %q, want down", nodes["c"].Status)
	}

	if nodes, err = s.nodes(ctx, st, at.Add(fullRead)); err != nil {
		t.Fatal(err)
	}
	if got := version(nodes, "b"); got != "2.0.0" {
		t.Errorf("node b after fullRead: runs %q, want 2.0.0", got)
	}
}
