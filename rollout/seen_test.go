package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
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
	version := func(nodes map[string]store.NodeState, name string) string {
		for _, a := range nodes[name].Apps {
			return a.Version
		}
		return ""
	}
	s := &seen{}
	nodes, fresh, err := s.nodes(ctx, st, at)
	if err != nil || len(nodes) != 6 || fresh != nil {
		t.Fatalf("first read: %d nodes, fresh %v, %v; want 6, all read (nil)", len(nodes), fresh, err)
	}

	report("a", "2.0.0")
	report("b", "2.0.0") // no event names b yet
	s.changed("a")
	s.changed("hello@2.0.0") // a subject that is no node
	nodes, fresh, err = s.nodes(ctx, st, at.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(fresh); !slices.Equal(fresh, []string{"a", "hello@2.0.0"}) {
		t.Errorf("read again %v, want the subjects named: a, hello@2.0.0", fresh)
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
	if nodes, fresh, err = s.nodes(ctx, st, at.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fresh, []string{"c"}) {
		t.Errorf("read again %v, want c", fresh)
	}
	if _, fresh, err = s.nodes(ctx, st, at.Add(2*time.Second)); err != nil || fresh == nil || len(fresh) != 0 {
		t.Errorf("with nothing named: read again %v (%v), want none, and not all", fresh, err)
	}
	if nodes["c"].Status != api.StatusDown {
		t.Errorf("node c: status %q, want down", nodes["c"].Status)
	}

	if nodes, fresh, err = s.nodes(ctx, st, at.Add(fullRead)); err != nil || fresh != nil {
		t.Fatalf("at fullRead: read again %v, want all (nil); %v", fresh, err)
	}
	if got := version(nodes, "b"); got != "2.0.0" {
		t.Errorf("node b after fullRead: runs %q, want 2.0.0", got)
	}
}

// The engine keeps each rollout's observation between steps and brings up to date only the nodes
// read again, and only those of the rollout's plan; a whole read starts it afresh.
func TestEngineObservesWhatChanged(t *testing.T) {
	node := func(name, version string, up bool) store.NodeState {
		n := store.NodeState{Status: api.StatusDown, Apps: []api.NodeApp{{App: "hello", Version: version, State: api.AppStateRunning}}}
		if up {
			n.Status = api.StatusUp
		}
		return n
	}
	nodes := map[string]store.NodeState{"a": node("a", "1.0.0", true), "b": node("b", "1.0.0", true), "x": node("x", "1.0.0", true)}
	p := Plan{Waves: []PlanWave{{Name: "w", Nodes: []PlanNode{{Name: "a"}, {Name: "b"}}}}}
	pr := Begin(p)
	e := &Engine{}
	e.refreshed([]int64{1}, nil)
	if obs := e.observe(1, p, pr, "hello", nodes); len(obs) != 2 || obs["a"].Version != "1.0.0" || !obs["b"].Up {
		t.Fatalf("first observation %+v", obs)
	}
	nodes["a"], nodes["b"], nodes["x"] = node("a", "2.0.0", true), node("b", "2.0.0", false), node("x", "2.0.0", true)
	e.refreshed([]int64{1}, []string{"a", "x"}) // b changed too, but no event named it
	obs := e.observe(1, p, pr, "hello", nodes)
	if obs["a"].Version != "2.0.0" || obs["b"].Version != "1.0.0" || !obs["b"].Up {
		t.Errorf("after a and x were read again: %+v; want a at 2.0.0, b as it was", obs)
	}
	if _, ok := obs["x"]; ok || len(obs) != 2 {
		t.Errorf("a node outside the plan is observed: %+v", obs)
	}
	delete(nodes, "a")
	e.refreshed([]int64{1}, []string{"a"})
	if obs := e.observe(1, p, pr, "hello", nodes); len(obs) != 1 {
		t.Errorf("a node removed is still observed: %+v", obs)
	}
	e.refreshed([]int64{1}, nil)
	if obs := e.observe(1, p, pr, "hello", nodes); obs["b"].Up || obs["b"].Version != "2.0.0" {
		t.Errorf("after a whole read, b: %+v; want down at 2.0.0", obs["b"])
	}
	e.refreshed([]int64{2}, []string{"b"})
	if _, ok := e.observed[1]; ok {
		t.Error("the observation of a rollout no longer open is kept")
	}
}

// A rollout's progress is stored as its own document and one per node, and a write after a step
// carries only the nodes whose progress changed; decoding what was stored gives the progress back.
func TestEncodeWritesWhatChanged(t *testing.T) {
	p := Plan{Waves: []PlanWave{{Name: "w", Nodes: []PlanNode{{Name: "a"}, {Name: "b"}, {Name: "c"}}}}}
	before := Begin(p)
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	before.Nodes["c"] = NodeProgress{State: NodeMoving, Since: at, Moved: true}
	doc, nodes, err := encode(Progress{}, before)
	if err != nil || len(nodes) != 3 || bytes.Contains(doc, []byte(`"a"`)) {
		t.Fatalf("first write: %s, %d nodes, %v; want every node, and none in the rollout's own document", doc, len(nodes), err)
	}
	next := before.Clone()
	next.Nodes["a"] = NodeProgress{State: NodeMoving, Since: at, Moved: true}
	next.Nodes["c"] = NodeProgress{State: NodeMoving, Since: at.In(time.FixedZone("CET", 3600)), Moved: true} // the same time
	_, nodes, err = encode(before, next)
	if err != nil || len(nodes) != 1 || nodes["a"] == nil {
		t.Fatalf("after a moved: wrote %q, %v; want a alone", slices.Collect(maps.Keys(nodes)), err)
	}
	_, all, _ := encode(Progress{}, next)
	rec := store.RolloutRecord{ID: 1, Plan: mustJSON(t, p), Progress: doc, Nodes: all}
	_, got, err := decode(rec)
	if err != nil || len(got.Nodes) != 3 || got.Nodes["a"].State != NodeMoving || !got.Nodes["a"].Since.Equal(at) || got.Nodes["b"].State != NodePending {
		t.Fatalf("decoded %+v, %v", got.Nodes, err)
	}
	rec.Nodes["b"] = []byte(`{"state":`)
	if _, _, err := decode(rec); err == nil || !strings.Contains(err.Error(), "node b") {
		t.Errorf("a node's broken document: %v; want an error naming the node", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
