package server

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/bundletest"
)

// GET /v1/events?since=N answers the events after N, never N itself, over HTTP as in the store.
func TestEventsAfterSince(t *testing.T) {
	h := start(t, Config{})
	for _, name := range []string{"ams", "gva", "chi"} {
		h.site(name, 1)
	}
	all, err := h.admin.Events(context.Background(), 0, 100)
	if err != nil || len(all) < 3 {
		t.Fatalf("events: %d %v", len(all), err)
	}
	n := all[len(all)-3].ID
	after, err := h.admin.Events(context.Background(), n, 100)
	if err != nil || len(after) != 2 || after[0].ID <= n || after[0].ID != all[len(all)-2].ID {
		t.Fatalf("events after %d: %+v %v", n, after, err)
	}
}

// A withdrawn release's blob is still referenced: the collector keeps it, since republishing
// the release under a new epoch needs it.
func TestCollectorKeepsWithdrawnBlob(t *testing.T) {
	h := start(t, Config{BlobGCGrace: time.Hour})
	ctx := context.Background()
	sg := newSigner(t)
	h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: sg.pub()})
	b := bundletest.Build(t, "hello", "1.0.0", "withdrawn later")
	rel, err := push(h, b, sg.sign(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.Withdraw(ctx, "hello", "1.0.0", "crashes on start"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(h.srv.blobs.Path(rel.SHA256), old, old)
	if removed, err := h.srv.CollectBlobs(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("the collector removed %v (%v)", removed, err)
	}
	again, err := h.admin.Republish(ctx, "hello", "1.0.0", 1)
	if err != nil || again.SHA256 != rel.SHA256 {
		t.Fatalf("republish after collection: %+v %v", again, err)
	}
	if _, err := os.Stat(h.srv.blobs.Path(rel.SHA256)); err != nil {
		t.Fatalf("the republished release's blob: %v", err)
	}
}

// A channel offers, per app, its highest (epoch, version) release that is not withdrawn:
// 1.10.0 above 1.9.0, a withdrawn top falls back, a republished epoch wins over any version.
func TestChannelCandidateOrder(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	sg := newSigner(t)
	h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: sg.pub()})
	for _, v := range []string{"1.9.0", "1.10.0", "1.2.0"} {
		b := bundletest.Build(t, "hello", v, "v"+v)
		if _, err := push(h, b, sg.sign(b)); err != nil {
			t.Fatal(err)
		}
	}
	candidate := func() string {
		t.Helper()
		chs, err := h.admin.Channels(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chs {
			if c.Name == "unstable" {
				return c.Candidates["hello"]
			}
		}
		t.Fatal("no unstable channel")
		return ""
	}
	if got := candidate(); got != "1.10.0" {
		t.Fatalf("candidate %q, want 1.10.0 (versions order as versions, not text)", got)
	}
	if _, err := h.admin.Withdraw(ctx, "hello", "1.10.0", "bad"); err != nil {
		t.Fatal(err)
	}
	if got := candidate(); got != "1.9.0" {
		t.Fatalf("candidate after withdrawing the top: %q, want 1.9.0", got)
	}
	if _, err := h.admin.Republish(ctx, "hello", "1.2.0", 1); err != nil {
		t.Fatal(err)
	}
	if got := candidate(); got != "1:1.2.0" {
		t.Fatalf("candidate after republishing 1.2.0 under epoch 1: %q", got)
	}
}

// A selector's negations select what they should: role!=mirror takes the nodes without that
// value, the label's absence included; !zone takes the nodes without the label.
func TestSelectorNegation(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	h.site("ams", 1)
	for name, lbl := range map[string]map[string]string{
		"m1": {"role": "mirror", "zone": "a"},
		"d1": {"role": "depot"},
		"x1": {},
	} {
		rawAgent(t, h, "ams", name)
		if len(lbl) > 0 {
			if _, err := h.admin.Label(ctx, name, api.LabelChange{Set: lbl}); err != nil {
				t.Fatal(err)
			}
		}
	}
	names := func(sel string) []string {
		t.Helper()
		nodes, err := h.admin.Nodes(ctx, client.NodeQuery{Selector: sel})
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		var out []string
		for _, n := range nodes {
			out = append(out, n.Name)
		}
		sort.Strings(out)
		return out
	}
	for sel, want := range map[string]string{
		"role!=mirror":     "[d1 x1]",
		"!zone":            "[d1 x1]",
		"role=mirror":      "[m1]",
		"zone,role!=depot": "[m1]",
	} {
		if got := names(sel); fmt.Sprint(got) != want {
			t.Errorf("%s selected %v, want %s", sel, got, want)
		}
	}
}
