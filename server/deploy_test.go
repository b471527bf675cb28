package server

import (
	"context"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/bundletest"
)

// pushSigned pushes app@version signed by a key the server trusts.
func pushSigned(t *testing.T, h *harness, app, version string) {
	t.Helper()
	s := newSigner(t)
	if _, err := h.admin.TrustKey(context.Background(), api.KeyTrust{PublicKey: s.pub()}); err != nil {
		t.Fatal(err)
	}
	b := bundletest.Build(t, app, version, app+version)
	if _, err := push(h, b, s.sign(b)); err != nil {
		t.Fatal(err)
	}
}

// generations is each node's generation, by name.
func generations(t *testing.T, h *harness) map[string]int64 {
	t.Helper()
	nodes, err := h.admin.Nodes(context.Background(), client.NodeQuery{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, n := range nodes {
		out[n.Name] = n.Generation
	}
	return out
}

// A dry run answers what the deploy would do (the nodes it would change, how many match) and
// writes nothing: no event, no assignment, no new generation. The deploy itself answers the same.
func TestDeployDryRun(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	h.site("ams", 1)
	h.site("gva", 2)
	rawAgent(t, h, "ams", "ams-01")
	rawAgent(t, h, "gva", "gva-01")
	pushSigned(t, h, "hello", "1.0.0")

	deploy := func(sel string, dry bool) api.Deployed {
		t.Helper()
		res, err := h.admin.Deploy(ctx, api.Deploy{Release: "hello@1.0.0", Selector: sel, DryRun: dry})
		if err != nil {
			t.Fatalf("deploy to %s (dry run %t): %v", sel, dry, err)
		}
		return res
	}
	same := func(got api.Deployed, nodes, unchanged string, dry bool) bool {
		return got.Release == "hello@1.0.0" && got.DryRun == dry && strings.Join(got.Nodes, " ") == nodes &&
			strings.Join(got.Unchanged, " ") == unchanged && got.Matched == len(got.Nodes)+len(got.Unchanged) && (got.EventID != 0) == (!dry && nodes != "")
	}

	before, gens := lastEventID(t, h.admin), generations(t, h)
	if got := deploy("site=ams", true); !same(got, "ams-01", "", true) || got.Matched != 1 {
		t.Errorf("dry run to site=ams: %+v", got)
	}
	if got := deploy("site", true); !same(got, "ams-01 gva-01", "", true) || got.Matched != 2 {
		t.Errorf("dry run to every node: %+v", got)
	}
	if after := lastEventID(t, h.admin); after != before {
		t.Errorf("a dry run wrote events (%d → %d)", before, after)
	}
	if after := generations(t, h); after["ams-01"] != gens["ams-01"] || after["gva-01"] != gens["gva-01"] {
		t.Errorf("a dry run moved generations: %v → %v", gens, after)
	}
	if n, err := h.admin.Node(ctx, "ams-01"); err != nil || len(n.Assigned) != 0 {
		t.Errorf("a dry run assigned %+v (%v)", n.Assigned, err)
	}

	if got := deploy("site=ams", false); !same(got, "ams-01", "", false) {
		t.Errorf("deploy to site=ams: %+v", got)
	}
	if got := deploy("site", true); !same(got, "gva-01", "ams-01", true) {
		t.Errorf("dry run to every node after a deploy to ams-01: %+v", got)
	}
	before = lastEventID(t, h.admin)
	if got := deploy("site=ams", false); !same(got, "", "ams-01", false) {
		t.Errorf("deploy to site=ams again: %+v", got)
	}
	if after := lastEventID(t, h.admin); after != before {
		t.Errorf("a deploy that changed nothing wrote events (%d → %d)", before, after)
	}
	if got := deploy("site", false); !same(got, "gva-01", "ams-01", false) {
		t.Errorf("deploy to every node: %+v", got)
	}
}

// A dry run refuses what the deploy refuses, with the same status and message, and neither
// writes anything.
func TestDeployRefusals(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	h.site("ams", 1)
	pushSigned(t, h, "hello", "1.0.0")
	pushSigned(t, h, "hello", "1.1.0")
	refuse := func(name string, req api.Deploy, code int, want string) {
		t.Helper()
		before := lastEventID(t, h.admin)
		for _, dry := range []bool{true, false} {
			req.DryRun = dry
			_, err := h.admin.Deploy(ctx, req)
			if client.StatusOf(err) != code || err.Error() != want {
				t.Errorf("%s (dry run %t): %v, want %d %q", name, dry, err, code, want)
			}
		}
		if after := lastEventID(t, h.admin); after != before {
			t.Errorf("%s: refused deploys wrote events (%d → %d)", name, before, after)
		}
	}
	refuse("an empty fleet", api.Deploy{Release: "hello@1.0.0", Selector: "site"}, 409,
		"no node has enrolled yet; nothing deployed")

	rawAgent(t, h, "ams", "ams-01")
	if _, err := h.admin.Withdraw(ctx, "hello", "1.1.0", "crashes on start"); err != nil {
		t.Fatal(err)
	}
	refuse("a release without a version", api.Deploy{Release: "hello", Selector: "site"}, 400,
		`release must be APP@VERSION, got "hello"`)
	refuse("no selector", api.Deploy{Release: "hello@1.0.0"}, 400,
		`a selector is required; the selector "site" matches every node`)
	refuse("a bad selector", api.Deploy{Release: "hello@1.0.0", Selector: "role in (x"}, 400,
		`invalid selector term "role in (x": want key=value, key!=value, key or !key, where a key is 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit`)
	refuse("a missing release", api.Deploy{Release: "hello@9.9.9", Selector: "role=none"}, 404,
		"release hello@9.9.9 not found")
	refuse("a withdrawn release", api.Deploy{Release: "hello@1.1.0", Selector: "site"}, 409,
		"release hello@1.1.0 is withdrawn (reason: crashes on start); deploy another version")
	refuse("a selector matching no node", api.Deploy{Release: "hello@1.0.0", Selector: "site=gva"}, 409,
		`no node matches the selector "site=gva"; nothing deployed (ferry node list shows the nodes and their labels)`)
	refuse("a long selector matching no node", api.Deploy{Release: "hello@1.0.0", Selector: strings.Repeat("role,", 1000) + "gpu"}, 409,
		`no node matches the selector "`+strings.Repeat("role,", 12)+`role"...; nothing deployed (ferry node list shows the nodes and their labels)`)
	if n, err := h.admin.Node(ctx, "ams-01"); err != nil || len(n.Assigned) != 0 {
		t.Errorf("refused deploys assigned %+v (%v)", n.Assigned, err)
	}
}
