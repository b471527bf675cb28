package assign_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/assign"
	"github.com/ferryhq/ferry/catalog"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/internal/backend"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/store"
)

func TestMain(m *testing.M) { os.Exit(backend.Main(m)) }

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// fleet makes site ams with the named nodes and signed releases hello@VERSION in the first
// channel.
func fleet(t *testing.T, st store.Store, nodes []string, versions ...string) map[string]api.Node {
	t.Helper()
	ctx := context.Background()
	inv := inventory.New(st, clock.NewFake(t0))
	if _, _, err := inv.AddSite(ctx, api.SiteAdd{Name: "ams", Tier: 1}); err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Node{}
	for _, name := range nodes {
		id := "tok-" + name
		if _, err := inv.CreateToken(ctx, store.TokenRecord{ID: id, SecretHash: "h", Kind: store.KindEnroll, Site: "ams", UsesLeft: ptr(1), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		n, _, err := inv.Enroll(ctx, id, "h", store.NodeRecord{Name: name, PublicKey: "pk-" + name})
		if err != nil {
			t.Fatal(err)
		}
		out[name] = n
	}
	err := st.Update(ctx, func(tx store.Tx) error {
		for _, v := range versions {
			if err := tx.InsertRelease(api.Release{App: "hello", Version: v, Class: "minor", SHA256: "sum" + v, Size: 7,
				SignedBy: "K", Signature: "sig" + v, CreatedAt: t0, Manifest: map[string]any{}}); err != nil {
				return err
			}
			if err := tx.AddToChannel("unstable", "hello", v, "pushed", "", t0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAssign(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		before := fleet(t, st, []string{"n1", "n2", "n3"}, "1.0.0", "1.1.0")
		a := assign.New(st, clock.NewFake(t0))
		if _, _, err := a.Assign(ctx, []string{"n1"}, "hello", "9.9.9"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("assign an unknown release: %v", err)
		}
		if _, err := inventory.New(st, clock.NewFake(t0)).RemoveNode(ctx, "n3"); err != nil {
			t.Fatal(err)
		}
		changed, ev, err := a.Assign(ctx, []string{"n2", "ghost", "n1", "n3", "n2"}, "hello", "1.0.0")
		if err != nil || fmt.Sprint(changed) != "[n2 n1]" || ev.Type != api.EventReleaseDeployed {
			t.Fatalf("Assign = %v %+v %v", changed, ev, err)
		}
		var d api.ReleaseDeployed
		if ev.Decode(&d) != nil || fmt.Sprint(d.Nodes) != "[n2 n1]" {
			t.Fatalf("deployed event: %s", ev.Data)
		}
		if changed, ev, err := a.Assign(ctx, []string{"n1", "n2"}, "hello", "1.0.0"); err != nil || len(changed) != 0 || ev.ID != 0 {
			t.Fatalf("repeated Assign = %v %+v %v", changed, ev, err)
		}
		n, err := st.Node(ctx, "n1")
		if err != nil || n.Generation != before["n1"].Generation+1 || len(n.Assigned) != 1 {
			t.Fatalf("node after assign: %+v %v", n, err)
		}
		if as := n.Assigned[0]; as.App != "hello" || as.Version != "1.0.0" || as.SHA256 != "sum1.0.0" || as.Size != 7 || as.Signature != "sig1.0.0" || as.Withdrawn != "" {
			t.Fatalf("assignment %+v", as)
		}
		if _, _, err := a.Assign(ctx, []string{"n2"}, "hello", "1.1.0"); err != nil {
			t.Fatal(err)
		}

		// Withdrawal marks the assignment and moves only the assigned nodes' generation.
		c := catalog.New(st, nil, clock.NewFake(t0), release.Limits{}, slog.New(slog.DiscardHandler))
		ev, err = c.Withdraw(ctx, "hello", "1.1.0", "bad")
		var w api.ReleaseWithdrawn
		if err != nil || ev.Decode(&w) != nil || w.AssignedNodes != 1 {
			t.Fatalf("Withdraw = %+v %v", ev, err)
		}
		n1, _ := st.Node(ctx, "n1")
		n2, _ := st.Node(ctx, "n2")
		if n1.Generation != before["n1"].Generation+1 || n1.Assigned[0].Withdrawn != "" {
			t.Fatalf("n1 after withdrawal of another release: %+v", n1)
		}
		if n2.Generation != before["n2"].Generation+3 || n2.Assigned[0].Withdrawn != "bad" {
			t.Fatalf("n2 after withdrawal: %+v", n2)
		}
		if _, _, err := a.Assign(ctx, []string{"n1"}, "hello", "1.1.0"); !errors.Is(err, fault.ErrConflict) {
			t.Fatalf("assign a withdrawn release: %v", err)
		}
	})
}

// App reports: events for installs and new failures, none for a repeat; a revoked or unknown
// node's report is refused.
func TestReport(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := store.WithActor(context.Background(), store.Actor{ID: "node:n1"})
		fleet(t, st, []string{"n1", "n2"}, "1.0.0")
		now := t0.Add(time.Minute)
		a := assign.New(st, clock.NewFake(now))
		ok := []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "sum1.0.0", InstalledAt: &now}}
		evs, err := a.Report(ctx, "n1", ok)
		if err != nil || len(evs) != 1 || evs[0].Type != api.EventAppInstalled || evs[0].Subject != "n1" || evs[0].Actor != "node:n1" {
			t.Fatalf("Report = %+v %v", evs, err)
		}
		if evs, err := a.Report(ctx, "n1", ok); err != nil || len(evs) != 0 {
			t.Fatalf("repeated report: %+v %v", evs, err)
		}
		failed := []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "sum1.0.0", InstalledAt: &now, Pending: "1.2.0", Error: "signature does not verify"}}
		if evs, err := a.Report(ctx, "n1", failed); err != nil || len(evs) != 1 || evs[0].Type != api.EventAppFailed || evs[0].Fields()["version"] != "1.2.0" {
			t.Fatalf("failure report: %+v %v", evs, err)
		}
		n, _ := st.Node(ctx, "n1")
		if len(n.Apps) != 1 || n.Apps[0].Error == "" || n.Apps[0].InstalledAt == nil || !n.Apps[0].InstalledAt.Equal(now) {
			t.Fatalf("stored apps: %+v", n.Apps)
		}
		if _, err := a.Report(ctx, "ghost", nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("report of an unknown node: %v", err)
		}
		if _, err := inventory.New(st, clock.NewFake(t0)).RemoveNode(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Report(ctx, "n2", ok); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("report of a revoked node: %v", err)
		}
	})
}

func TestTransitions(t *testing.T) {
	now := t0
	for _, tc := range []struct {
		name          string
		before, after []api.NodeApp
		want          string
	}{
		{"first install", nil, []api.NodeApp{{App: "a", Version: "1"}}, "[app.installed]"},
		{"same", []api.NodeApp{{App: "a", Version: "1"}}, []api.NodeApp{{App: "a", Version: "1"}}, "[]"},
		{"upgrade", []api.NodeApp{{App: "a", Version: "1"}}, []api.NodeApp{{App: "a", Version: "2"}}, "[app.installed]"},
		{"same version, other content", []api.NodeApp{{App: "a", Version: "1", SHA256: "x"}}, []api.NodeApp{{App: "a", Version: "1", SHA256: "y"}}, "[app.installed]"},
		{"new failure", []api.NodeApp{{App: "a", Version: "1"}}, []api.NodeApp{{App: "a", Version: "1", Pending: "2", Error: "e"}}, "[app.failed]"},
		{"same failure", []api.NodeApp{{App: "a", Pending: "2", Error: "e"}}, []api.NodeApp{{App: "a", Pending: "2", Error: "e"}}, "[]"},
		{"failure, given up", []api.NodeApp{{App: "a", Pending: "2", Error: "e", Retry: true}}, []api.NodeApp{{App: "a", Pending: "2", Error: "e"}}, "[app.failed]"},
		{"failure for another version", []api.NodeApp{{App: "a", Pending: "2", Error: "e"}}, []api.NodeApp{{App: "a", Pending: "3", Error: "e"}}, "[app.failed]"},
		{"two apps", nil, []api.NodeApp{{App: "a", Version: "1"}, {App: "b", Pending: "1", Error: "e"}}, "[app.installed app.failed]"},
		{"app gone", []api.NodeApp{{App: "a", Version: "1"}}, nil, "[]"},
		{"a state", nil, []api.NodeApp{{App: "a", Pending: "1", State: api.AppStateDownloading}}, "[app.state]"},
		{"same state", []api.NodeApp{{App: "a", Version: "1", State: api.AppStateRunning}}, []api.NodeApp{{App: "a", Version: "1", State: api.AppStateRunning}}, "[]"},
		{"installed and running", []api.NodeApp{{App: "a", Pending: "1", State: api.AppStateVerifying}}, []api.NodeApp{{App: "a", Version: "1", State: api.AppStateRunning}}, "[app.state app.installed]"},
		{"rolled back", []api.NodeApp{{App: "a", Version: "1", Pending: "2", State: api.AppStateVerifying}},
			[]api.NodeApp{{App: "a", Version: "1", Pending: "2", Error: "verify: web exited", State: api.AppStateRolledBack}}, "[app.state app.failed]"},
		{"restarted by an operator", []api.NodeApp{{App: "a", Version: "1", State: api.AppStateRunning, Restarted: 1}},
			[]api.NodeApp{{App: "a", Version: "1", State: api.AppStateRunning, Restarted: 2}}, "[app.restarted]"},
		{"state dropped by an older agent", []api.NodeApp{{App: "a", Version: "1", State: api.AppStateRunning}}, []api.NodeApp{{App: "a", Version: "1"}}, "[]"},
	} {
		var types []string
		for _, e := range assign.Transitions("n1", tc.before, tc.after, now) {
			types = append(types, e.Type)
			if e.Subject != "n1" || !e.Time.Equal(now) {
				t.Errorf("%s: event %+v", tc.name, e)
			}
		}
		if got := fmt.Sprint(types); got != tc.want && !(tc.want == "[]" && types == nil) {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// An app.state event names the release it concerns and, for a failure, why.
func TestStateChangePayloads(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after api.NodeApp
		want          api.AppStateChanged
	}{
		{"rolled back: the release that failed, and why",
			api.NodeApp{App: "a", Version: "1", Pending: "2", State: api.AppStateVerifying},
			api.NodeApp{App: "a", Version: "1", Pending: "2", Error: "verify: check http failed", State: api.AppStateRolledBack},
			api.AppStateChanged{App: "a", Version: "2", From: api.AppStateVerifying, To: api.AppStateRolledBack, Reason: "verify: check http failed"}},
		{"running: the release that runs",
			api.NodeApp{App: "a", Pending: "2", State: api.AppStateVerifying},
			api.NodeApp{App: "a", Version: "2", State: api.AppStateRunning},
			api.AppStateChanged{App: "a", Version: "2", From: api.AppStateVerifying, To: api.AppStateRunning}},
		{"crashloop: which process",
			api.NodeApp{App: "a", Version: "2", State: api.AppStateRunning},
			api.NodeApp{App: "a", Version: "2", State: api.AppStateCrashloop, Processes: []api.ProcessState{{Name: "ok", State: "running"}, {Name: "web", State: "crashloop", Restarts: 6}}},
			api.AppStateChanged{App: "a", Version: "2", From: api.AppStateRunning, To: api.AppStateCrashloop, Reason: "process web keeps exiting (6 restarts)"}},
		{"downloading: the release on its way",
			api.NodeApp{App: "a", Version: "1", State: api.AppStateRunning},
			api.NodeApp{App: "a", Version: "1", Pending: "2", State: api.AppStateDownloading},
			api.AppStateChanged{App: "a", Version: "2", From: api.AppStateRunning, To: api.AppStateDownloading}},
		{"starting again on a rollback: the release it goes back to",
			api.NodeApp{App: "a", Version: "1", Pending: "2", State: api.AppStateVerifying},
			api.NodeApp{App: "a", Version: "1", Pending: "2", State: api.AppStateStarting},
			api.AppStateChanged{App: "a", Version: "1", From: api.AppStateVerifying, To: api.AppStateStarting}},
		{"verifying a first install",
			api.NodeApp{App: "a", Pending: "2", State: api.AppStateStarting},
			api.NodeApp{App: "a", Pending: "2", State: api.AppStateVerifying},
			api.AppStateChanged{App: "a", Version: "2", From: api.AppStateStarting, To: api.AppStateVerifying}},
	} {
		evs := assign.Transitions("n1", []api.NodeApp{tc.before}, []api.NodeApp{tc.after}, t0)
		var got api.AppStateChanged
		if len(evs) == 0 || evs[0].Type != api.EventAppState || evs[0].Decode(&got) != nil || got != tc.want {
			t.Errorf("%s: events %+v, payload %+v; want %+v", tc.name, evs, got, tc.want)
		}
	}
}

// Nodes that follow a channel get its candidate, move with it on promotion, withdrawal and
// republish, and stay put when the channel is left without one; pinned nodes never move.
func TestFollowChannel(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		fleet(t, st, []string{"n1", "n2", "n3"}, "1.0.0", "1.1.0")
		a := assign.New(st, clock.NewFake(t0))
		c := catalog.New(st, nil, clock.NewFake(t0), release.Limits{}, slog.New(slog.DiscardHandler))
		desired := func(name string) (string, string) {
			t.Helper()
			n, err := st.Node(ctx, name)
			if err != nil || len(n.Assigned) != 1 {
				t.Fatalf("%s assigned %+v, %v", name, n.Assigned, err)
			}
			return n.Assigned[0].Version, n.Assigned[0].Channel
		}
		if _, _, _, err := a.Follow(ctx, []string{"n1"}, "hello", "nowhere"); !errors.Is(err, fault.ErrNotFound) {
			t.Fatalf("follow an unknown channel: %v", err)
		}
		if _, _, _, err := a.Follow(ctx, []string{"n1"}, "hello", "preview"); !errors.Is(err, fault.ErrConflict) {
			t.Fatalf("follow a channel without the app: %v", err)
		}
		ver, changed, ev, err := a.Follow(ctx, []string{"n1", "n2"}, "hello", "unstable")
		var p api.ReleaseDeployed
		if err != nil || ver != "1.1.0" || fmt.Sprint(changed) != "[n1 n2]" || ev.Subject != "hello@1.1.0" || ev.Decode(&p) != nil || p.Channel != "unstable" {
			t.Fatalf("Follow = %s %v %+v %v", ver, changed, ev, err)
		}
		if _, changed, _, err := a.Follow(ctx, []string{"n1"}, "hello", "unstable"); err != nil || len(changed) != 0 {
			t.Fatalf("following again changed %v, %v", changed, err)
		}
		if _, _, err := a.Assign(ctx, []string{"n3"}, "hello", "1.1.0"); err != nil {
			t.Fatal(err)
		}
		// A withdrawal moves the followers back to the channel's new candidate.
		if _, err := c.Withdraw(ctx, "hello", "1.1.0", "crashes"); err != nil {
			t.Fatal(err)
		}
		if v, ch := desired("n1"); v != "1.0.0" || ch != "unstable" {
			t.Fatalf("a follower after the withdrawal: %s %s", v, ch)
		}
		if v, ch := desired("n3"); v != "1.1.0" || ch != "" {
			t.Fatalf("a pinned node moved: %s %s", v, ch)
		}
		// A republish lands in the first channel with a higher epoch: the followers take it.
		if _, _, err := c.Republish(ctx, "hello", "1.0.0", 1); err != nil {
			t.Fatal(err)
		}
		if v, _ := desired("n2"); v != "1:1.0.0" {
			t.Fatalf("a follower after the republish: %s", v)
		}
		// Followers of preview move when a release is promoted into it.
		if _, _, _, err := a.Follow(ctx, []string{"n3"}, "hello", "unstable"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Promote(ctx, "hello", "1.0.0", "preview", false); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := a.Follow(ctx, []string{"n3"}, "hello", "preview"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Promote(ctx, "hello", "1:1.0.0", "preview", false); err != nil {
			t.Fatal(err)
		}
		if v, ch := desired("n3"); v != "1:1.0.0" || ch != "preview" {
			t.Fatalf("a follower of preview after a promotion: %s %s", v, ch)
		}
		// Withdrawing the candidate moves the followers to what the channel holds next.
		if _, err := c.Withdraw(ctx, "hello", "1:1.0.0", "bad too"); err != nil {
			t.Fatal(err)
		}
		if v, _ := desired("n3"); v != "1.0.0" {
			t.Fatalf("a follower of preview after the withdrawal: %s (1.0.0 is still in preview)", v)
		}
		// Undeploy.
		changed, ev, err = a.Unassign(ctx, []string{"n3", "ghost", "n1"}, "hello")
		if err != nil || fmt.Sprint(changed) != "[n3 n1]" || ev.Type != api.EventAppUndeploy {
			t.Fatalf("Unassign = %v %+v %v", changed, ev, err)
		}
		if n, _ := st.Node(ctx, "n1"); len(n.Assigned) != 0 {
			t.Fatalf("n1 still assigned %+v", n.Assigned)
		}
		if changed, _, err := a.Unassign(ctx, []string{"n1"}, "hello"); err != nil || len(changed) != 0 {
			t.Fatalf("Unassign again = %v %v", changed, err)
		}
	})
}

// Reports of many nodes that come at once are written together, and each is stored with its
// own events and its own actor.
func TestReportsAtOnce(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		var names []string
		for i := range 24 {
			names = append(names, fmt.Sprintf("n%02d", i))
		}
		fleet(t, st, append(names, "gone"), "1.0.0")
		if _, err := inventory.New(st, clock.NewFake(t0)).RemoveNode(context.Background(), "gone"); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Minute)
		a := assign.New(st, clock.NewFake(now))
		ok := []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "sum1.0.0", InstalledAt: &now, State: api.AppStateRunning}}
		var wg sync.WaitGroup
		errs := make(map[string]error)
		var mu sync.Mutex
		for _, name := range append(names, "gone") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := store.WithActor(context.Background(), store.Actor{ID: "node:" + name})
				evs, err := a.Report(ctx, name, ok)
				if err == nil && (len(evs) != 2 || evs[0].Actor != "node:"+name || evs[0].Subject != name || evs[0].ID == 0) {
					err = fmt.Errorf("events %+v", evs)
				}
				mu.Lock()
				errs[name] = err
				mu.Unlock()
			}()
		}
		wg.Wait()
		for _, name := range names {
			if errs[name] != nil {
				t.Errorf("%s: %v", name, errs[name])
			}
			if n, err := st.Node(context.Background(), name); err != nil || len(n.Apps) != 1 || n.Apps[0].Version != "1.0.0" {
				t.Errorf("%s stored %+v %v", name, n.Apps, err)
			}
		}
		if !errors.Is(errs["gone"], store.ErrNotFound) {
			t.Errorf("a revoked node's report in the batch: %v", errs["gone"])
		}
		evs, err := st.Events(context.Background(), 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if (e.Type == api.EventAppInstalled || e.Type == api.EventAppState) && e.Actor != "node:"+e.Subject {
				t.Errorf("%s of %s written as %s", e.Type, e.Subject, e.Actor)
			}
		}
	})
}
