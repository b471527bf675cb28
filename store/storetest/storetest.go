// Package storetest is the suite every store.Store backend must pass; each backend's tests call
// Run with a constructor for empty stores.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tt := range suite() {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// RunNamed runs the named tests of the suite, for a backend that is not complete yet; a name
// the suite does not have fails.
func RunNamed(t *testing.T, open func(t *testing.T) store.Store, names ...string) {
	tests := map[string]func(*testing.T, store.Store){}
	for _, tt := range suite() {
		tests[tt.name] = tt.fn
	}
	for _, name := range names {
		fn := tests[name]
		if fn == nil {
			t.Errorf("the suite has no test %q", name)
			continue
		}
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

type suiteTest struct {
	name string
	fn   func(*testing.T, store.Store)
}

func suite() []suiteTest {
	return []suiteTest{
		{"Sites", testSites},
		{"Enroll", testEnroll},
		{"NodeStatus", testNodeStatus},
		{"Labels", testLabels},
		{"Events", testEvents},
		{"EventActor", testEventActor},
		{"Watch", testWatch},
		{"SpendNonce", testSpendNonce},
		{"Keys", testKeys},
		{"Releases", testReleases},
		{"Channels", testChannels},
		{"Assignments", testAssignments},
		{"Unsigned", testUnsigned},
		{"Secrets", testSecrets},
	}
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func addSite(t *testing.T, s store.Store, name string, tier int) {
	t.Helper()
	if _, err := s.CreateSite(context.Background(), api.Site{Name: name, Tier: tier, Lat: ptr(52.37), Lon: ptr(4.9), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

func enroll(t *testing.T, s store.Store, site, name string) api.Node {
	t.Helper()
	ctx := context.Background()
	id := "tok-" + name
	if _, err := s.CreateToken(ctx, store.TokenRecord{ID: id, SecretHash: "h", Kind: store.KindEnroll, Site: site, UsesLeft: ptr(1), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	n, _, err := s.EnrollNode(ctx, id, "h", store.NodeRecord{Name: name, PublicKey: "pk-" + name, Labels: map[string]string{"role": "mirror"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func testSites(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	addSite(t, s, "gva", 3)
	if _, err := s.CreateSite(ctx, api.Site{Name: "ams", Tier: 2, CreatedAt: t0}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate site: got %v, want ErrExists", err)
	}
	sites, err := s.Sites(ctx)
	if err != nil || len(sites) != 2 || sites[0].Name != "ams" || sites[1].Tier != 3 || *sites[0].Lat != 52.37 {
		t.Fatalf("Sites = %+v, %v", sites, err)
	}
	enroll(t, s, "ams", "n1")
	if _, err := s.DeleteSite(ctx, "ams", false, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete site with nodes: got %v, want ErrConflict", err)
	}
	if st, _ := s.Site(ctx, "ams"); st.Nodes[api.StatusUp] != 1 {
		t.Fatalf("site node counts = %v", st.Nodes)
	}
	evs, err := s.DeleteSite(ctx, "ams", true, t0)
	if err != nil || len(evs) != 2 || evs[0].Type != "node.revoked" || evs[1].Type != "site.removed" {
		t.Fatalf("forced delete: %+v, %v", evs, err)
	}
	if _, err := s.Node(ctx, "n1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node of removed site: %v", err)
	}
	if _, err := s.Site(ctx, "ams"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removed site: %v", err)
	}
	if _, err := s.DeleteSite(ctx, "nope", false, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete missing site: %v", err)
	}
}

func testEnroll(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	exp := t0.Add(time.Hour)
	if _, err := s.CreateToken(ctx, store.TokenRecord{ID: "e1", SecretHash: "h1", Kind: store.KindEnroll, Site: "ams", UsesLeft: ptr(2), ExpiresAt: &exp, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateToken(ctx, store.TokenRecord{ID: "e2", SecretHash: "h2", Kind: store.KindEnroll, Site: "nope", CreatedAt: t0}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token for missing site: %v", err)
	}
	rec := func(name string) store.NodeRecord { return store.NodeRecord{Name: name, PublicKey: "pk-" + name} }
	if _, _, err := s.EnrollNode(ctx, "e1", "wrong", rec("a"), t0); !errors.Is(err, store.ErrTokenInvalid) {
		t.Fatalf("forged secret: %v", err)
	}
	if _, _, err := s.EnrollNode(ctx, "e1", "h1", rec("a"), exp); !errors.Is(err, store.ErrTokenInvalid) {
		t.Fatalf("expired token: %v", err)
	}
	n, ev, err := s.EnrollNode(ctx, "e1", "h1", rec("a"), t0)
	if err != nil || n.Site != "ams" || n.Tier != 1 || n.Status != api.StatusUp || n.Generation != 1 || ev.Type != "node.enrolled" {
		t.Fatalf("enroll: %+v %+v %v", n, ev, err)
	}
	if _, _, err := s.EnrollNode(ctx, "e1", "h1", rec("a"), t0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, _, err := s.EnrollNode(ctx, "e1", "h1", store.NodeRecord{Name: "b", PublicKey: "pk-a"}, t0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, _, err := s.EnrollNode(ctx, "e1", "h1", rec("b"), t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.EnrollNode(ctx, "e1", "h1", rec("c"), t0); !errors.Is(err, store.ErrTokenInvalid) {
		t.Fatalf("used-up token: %v", err)
	}
	tok, err := s.Token(ctx, "e1")
	if err != nil || *tok.UsesLeft != 0 {
		t.Fatalf("token after use: %+v %v", tok, err)
	}
	// A revoked node's name can be enrolled again, with a new key.
	if _, err := s.RevokeNode(ctx, "a", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeNode(ctx, "a", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := s.CreateToken(ctx, store.TokenRecord{ID: "e3", SecretHash: "h3", Kind: store.KindEnroll, Site: "ams", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.EnrollNode(ctx, "e3", "h3", store.NodeRecord{Name: "a", PublicKey: "pk-a2"}, t0); err != nil || n.PublicKey != "pk-a2" {
		t.Fatalf("re-enroll revoked name: %+v %v", n, err)
	}
	if _, err := s.DeleteToken(ctx, "e3", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.EnrollNode(ctx, "e3", "h3", rec("d"), t0); !errors.Is(err, store.ErrTokenInvalid) {
		t.Fatalf("revoked token: %v", err)
	}
	toks, err := s.Tokens(ctx)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens = %+v %v", toks, err)
	}
}

func testNodeStatus(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	enroll(t, s, "ams", "n1")
	ev, changed, err := s.SetNodeStatus(ctx, "n1", api.StatusDown, t0)
	if err != nil || !changed || ev.Type != "node.down" {
		t.Fatalf("down: %+v %v %v", ev, changed, err)
	}
	if _, changed, _ := s.SetNodeStatus(ctx, "n1", api.StatusDown, t0); changed {
		t.Fatal("second down reported a change")
	}
	if ev, changed, _ := s.SetNodeStatus(ctx, "n1", api.StatusUp, t0); !changed || ev.Type != "node.up" {
		t.Fatalf("up: %+v", ev)
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
}

func testLabels(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	enroll(t, s, "ams", "n1")
	enroll(t, s, "ams", "n2")
	nodes, evs, err := s.ChangeLabels(ctx, []string{"n1", "n2"}, map[string]string{"zone": "b"}, []string{"role"}, t0)
	if err != nil || len(nodes) != 2 || len(evs) != 2 || nodes[0].Generation != 2 || nodes[0].Labels["zone"] != "b" || nodes[0].Labels["role"] != "" {
		t.Fatalf("ChangeLabels = %+v %+v %v", nodes, evs, err)
	}
	// An unchanged label set keeps the generation.
	nodes, _, err = s.ChangeLabels(ctx, []string{"n1"}, map[string]string{"zone": "b"}, nil, t0)
	if err != nil || len(nodes) != 0 {
		t.Fatalf("no-op change = %+v %v", nodes, err)
	}
	// One missing node fails the whole change.
	if _, _, err := s.ChangeLabels(ctx, []string{"n1", "zz"}, map[string]string{"zone": "c"}, nil, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing node: %v", err)
	}
	if n, _ := s.Node(ctx, "n1"); n.Labels["zone"] != "b" || n.Generation != 2 {
		t.Fatalf("failed change was partly applied: %+v", n)
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
	if _, _, err := s.ChangeLabels(ctx, []string{"n1", "n2"}, many("a", labels.MaxLabels-2), nil, t0); err != nil {
		t.Fatalf("labels up to the bound: %v", err)
	}
	if _, _, err := s.ChangeLabels(ctx, []string{"n2", "n1"}, many("b", 2), nil, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("labels past the bound: %v", err)
	}
	if n, _ := s.Node(ctx, "n2"); len(n.Labels) > labels.MaxLabels || n.Labels["b0"] != "" {
		t.Fatalf("a change past the bound was partly applied: %d labels", len(n.Labels))
	}
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ids []int64
	for i := 0; i < 5; i++ {
		e, err := s.AppendEvent(ctx, api.NewEvent(t0, "test", "x", api.BlobCollected{Size: int64(i)}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("event ids not increasing: %v", ids)
		}
	}
	evs, err := s.Events(ctx, ids[1], 2)
	if err != nil || len(evs) != 2 || evs[0].ID != ids[2] || evs[1].Fields()["size"] != float64(3) || !evs[0].Time.Equal(t0) {
		t.Fatalf("Events = %+v %v", evs, err)
	}
}

// The feed returns every event after its start once, in order, and waits for the next write
// when it has returned them all; a write committed while nobody waits is not missed.
func testWatch(t *testing.T, s store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := s.AppendEvent(ctx, api.Event{Time: t0, Type: "test", Subject: "a"})
	if err != nil {
		t.Fatal(err)
	}
	f := store.Watch(s, first.ID-1)
	if evs, err := f.Next(ctx); err != nil || len(evs) != 1 || evs[0].ID != first.ID {
		t.Fatalf("first Next = %+v %v", evs, err)
	}
	got := make(chan []api.Event)
	go func() {
		evs, _ := f.Next(ctx)
		got <- evs
	}()
	second, err := s.AppendEvent(ctx, api.Event{Time: t0, Type: "test", Subject: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if evs := <-got; len(evs) != 1 || evs[0].ID != second.ID || evs[0].Subject != "b" {
		t.Fatalf("Next after a write = %+v", evs)
	}
	// Writes made while nobody waits come in one read, in order; a write that appends no
	// event wakes a waiter without giving it anything.
	var want []int64
	for _, sub := range []string{"c", "d", "e"} {
		e, err := s.AppendEvent(ctx, api.Event{Time: t0, Type: "test", Subject: sub})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	evs, err := f.Next(ctx)
	if err != nil || len(evs) != 3 || evs[0].ID != want[0] || evs[2].ID != want[2] {
		t.Fatalf("Next after three writes = %+v %v", evs, err)
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if evs, err := f.Next(short); err == nil {
		t.Fatalf("Next with nothing new returned %+v", evs)
	}
}

// Every event a write records carries the actor of the write's context, in what the write
// returns and in the log; a context without one is the system's.
func testEventActor(t *testing.T, s store.Store) {
	admin := store.Actor{ID: "token:abc", Role: "admin", Source: "127.0.0.1:5555"}
	node := store.Actor{ID: "node:n1", Source: "10.0.0.7:40000"}
	actx := store.WithActor(context.Background(), admin)
	nctx := store.WithActor(context.Background(), node)
	plain := context.Background()
	want := map[int64]store.Actor{} // event id -> actor
	got := func(a store.Actor, evs ...api.Event) {
		t.Helper()
		for _, ev := range evs {
			if ev.ID == 0 || ev.Type == "" {
				t.Fatalf("no event returned: %+v", ev)
			}
			if ev.Actor != a.ID || ev.Role != a.Role || ev.Source != a.Source {
				t.Fatalf("%s event of %s: actor %q role %q source %q, want %+v", ev.Type, ev.Subject, ev.Actor, ev.Role, ev.Source, a)
			}
			if _, dup := want[ev.ID]; dup {
				t.Fatalf("event id %d returned twice", ev.ID)
			}
			want[ev.ID] = a
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Every write that records events, under an operator's context.
	ev, err := s.CreateSite(actx, api.Site{Name: "ams", Tier: 1, CreatedAt: t0})
	must(err)
	got(admin, ev)
	ev, err = s.CreateSite(actx, api.Site{Name: "gva", Tier: 2, CreatedAt: t0})
	must(err)
	got(admin, ev)
	for _, id := range []string{"e1", "e2"} {
		ev, err = s.CreateToken(actx, store.TokenRecord{ID: id, SecretHash: "h", Kind: store.KindEnroll, Site: "ams", CreatedAt: t0})
		must(err)
		got(admin, ev)
	}
	ev, err = s.CreateToken(actx, store.TokenRecord{ID: "e3", SecretHash: "h", Kind: store.KindEnroll, Site: "gva", CreatedAt: t0})
	must(err)
	got(admin, ev)
	_, ev, err = s.EnrollNode(actx, "e1", "h", store.NodeRecord{Name: "n1", PublicKey: "pk-n1"}, t0)
	must(err)
	got(admin, ev)
	_, ev, err = s.EnrollNode(actx, "e2", "h", store.NodeRecord{Name: "n2", PublicKey: "pk-n2"}, t0)
	must(err)
	got(admin, ev)
	_, ev, err = s.EnrollNode(actx, "e3", "h", store.NodeRecord{Name: "g1", PublicKey: "pk-g1"}, t0)
	must(err)
	got(admin, ev)
	_, evs, err := s.ChangeLabels(actx, []string{"n1", "n2"}, map[string]string{"zone": "a"}, nil, t0)
	must(err)
	if len(evs) != 2 {
		t.Fatalf("ChangeLabels events: %+v", evs)
	}
	got(admin, evs...)
	ev, err = s.TrustKey(actx, api.SigningKey{ID: "0123456789ABCDEF", PublicKey: "RWQ-key", CreatedAt: t0})
	must(err)
	got(admin, ev)
	ev, err = s.RevokeKey(actx, "0123456789ABCDEF", t0)
	must(err)
	got(admin, ev)
	ev, err = s.SetAllowUnsigned(actx, "unstable", true, t0)
	must(err)
	got(admin, ev)
	ev, err = s.SetAllowUnsigned(actx, "preview", true, t0)
	must(err)
	got(admin, ev)
	_, ev, _, err = s.PutRelease(actx, api.Release{App: "hello", Version: "1.0.0", Class: "minor", SHA256: "a1", CreatedAt: t0, Manifest: map[string]any{}})
	must(err)
	got(admin, ev)
	ev, err = s.CreateChannel(actx, api.ChannelCreate{Name: "canary", After: "preview"}, t0)
	must(err)
	got(admin, ev)
	ev, err = s.Promote(actx, "hello", "1.0.0", "preview", false, t0)
	must(err)
	got(admin, ev)
	_, ev, err = s.Republish(actx, "hello", "1.0.0", "1.0.1", t0)
	must(err)
	got(admin, ev)
	_, ev, err = s.Assign(actx, []string{"n1", "n2"}, "hello", "1.0.1", t0)
	must(err)
	got(admin, ev)
	ev, _, err = s.Withdraw(actx, "hello", "1.0.0", "bad", t0)
	must(err)
	got(admin, ev)
	ev, err = s.DeleteToken(actx, "e1", t0)
	must(err)
	got(admin, ev)
	ev, err = s.RevokeNode(actx, "n2", t0)
	must(err)
	got(admin, ev)
	evs, err = s.DeleteSite(actx, "gva", true, t0)
	must(err)
	if len(evs) != 2 {
		t.Fatalf("DeleteSite events: %+v", evs)
	}
	got(admin, evs...)
	ev, err = s.AppendEvent(actx, api.Event{Time: t0, Type: "test", Subject: "x"})
	must(err)
	got(admin, ev)

	// A node's own report is the node's.
	evs, err = s.SetApps(nctx, "n1", []api.NodeApp{{App: "hello", Version: "1.0.1", SHA256: "a1"}}, t0)
	must(err)
	if len(evs) != 1 {
		t.Fatalf("SetApps events: %+v", evs)
	}
	got(node, evs...)

	// Without an actor, the system; an actor set on the event itself does not count.
	ev, changed, err := s.SetNodeStatus(plain, "n1", api.StatusDown, t0)
	must(err)
	if !changed {
		t.Fatal("SetNodeStatus: not changed")
	}
	got(store.System, ev)
	_, evs, err = s.ChangeLabels(plain, []string{"n1"}, map[string]string{"zone": "b"}, nil, t0)
	must(err)
	got(store.System, evs...)
	ev, err = s.AppendEvent(plain, api.Event{Time: t0, Type: "blob.collected", Subject: "sha256:aa", Actor: "token:forged", Role: "admin", Source: "1.2.3.4:5"})
	must(err)
	got(store.System, ev)
	ev, err = s.AppendEvent(store.WithActor(plain, store.Actor{}), api.Event{Time: t0, Type: "test", Subject: "y"})
	must(err)
	got(store.System, ev)

	// The log holds exactly the events the writes returned, with the same actors.
	log, err := s.Events(plain, 0, 1000)
	must(err)
	if len(log) != len(want) {
		t.Fatalf("log has %d events, the writes returned %d", len(log), len(want))
	}
	for _, e := range log {
		a, ok := want[e.ID]
		if !ok {
			t.Fatalf("event %d (%s %s) in the log was not returned by its write", e.ID, e.Type, e.Subject)
		}
		if e.Actor != a.ID || e.Role != a.Role || e.Source != a.Source {
			t.Fatalf("logged %s event of %s: actor %q role %q source %q, want %+v", e.Type, e.Subject, e.Actor, e.Role, e.Source, a)
		}
	}
}

// A nonce is spent once until it expires; spending it again is refused, also by a concurrent
// spender; expired records are forgotten.
func testSpendNonce(t *testing.T, s store.Store) {
	ctx := context.Background()
	exp := t0.Add(time.Minute)
	spend := func(nonce string, expires, now time.Time, want bool) {
		t.Helper()
		if ok, err := s.SpendNonce(ctx, nonce, expires, now); err != nil || ok != want {
			t.Fatalf("SpendNonce(%.20q, expires %s, now %s) = %v, %v; want %v", nonce, expires.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano), ok, err, want)
		}
	}
	spend("n1", exp, t0, true)
	spend("n1", exp, t0, false)
	spend("n1", exp.Add(time.Hour), t0.Add(time.Second), false)
	spend("n2", exp, t0, true)
	// Still spent at the instant it expires; forgotten just after.
	spend("n1", exp.Add(time.Minute), exp, false)
	spend("n1", exp.Add(time.Minute), exp.Add(time.Nanosecond), true)
	spend("n1", exp.Add(time.Minute), exp.Add(time.Second), false)
	spend("n2", exp.Add(time.Minute), exp.Add(time.Second), true)

	long := strings.Repeat("x", store.MaxNonceLen)
	spend(long, exp, t0, true)
	spend(long, exp, t0, false)
	for _, bad := range []string{"", long + "x"} {
		if ok, err := s.SpendNonce(ctx, bad, exp, t0); err == nil || ok {
			t.Fatalf("SpendNonce of %d bytes = %v, %v; want an error", len(bad), ok, err)
		}
	}

	// Of many concurrent spenders of one nonce, exactly one succeeds.
	const n = 16
	var wg sync.WaitGroup
	results := make(chan bool, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.SpendNonce(ctx, "race", exp, t0)
			if err != nil {
				t.Error(err)
			}
			results <- ok
		}()
	}
	wg.Wait()
	close(results)
	won := 0
	for ok := range results {
		if ok {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent spends of one nonce succeeded", won, n)
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := api.SigningKey{ID: "0123456789ABCDEF", PublicKey: "RWQ-key", Comment: "release team", CreatedAt: t0}
	if ev, err := s.TrustKey(ctx, k); err != nil || ev.Type != "key.trusted" {
		t.Fatalf("TrustKey: %+v %v", ev, err)
	}
	if _, err := s.TrustKey(ctx, k); !errors.Is(err, store.ErrExists) {
		t.Fatalf("trust twice: %v", err)
	}
	if _, err := s.RevokeKey(ctx, k.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, k.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := s.TrustKey(ctx, k); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("trust a revoked key again: %v", err)
	}
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].RevokedAt == nil || keys[0].Comment != "release team" {
		t.Fatalf("Keys = %+v %v", keys, err)
	}
}

func testReleases(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := api.Release{App: "hello", Version: "1.4.0", Class: "minor", SHA256: "aa", Size: 10, SignedBy: "0123456789ABCDEF", Signature: "c2ln",
		CreatedAt: t0, Manifest: map[string]any{"app": "hello"}}
	got, ev, created, err := s.PutRelease(ctx, r)
	if err != nil || !created || ev.Type != "release.pushed" || got.Signature != "c2ln" || len(got.Channels) != 1 || got.Channels[0] != "unstable" || got.Manifest["app"] != "hello" {
		t.Fatalf("PutRelease = %+v %+v %v %v", got, ev, created, err)
	}
	if _, _, created, err := s.PutRelease(ctx, r); err != nil || created {
		t.Fatalf("same bytes again: created %v, %v", created, err)
	}
	other := r
	other.SHA256 = "bb"
	if _, _, _, err := s.PutRelease(ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("other bytes under the same version: %v", err)
	}
	unsigned := r
	unsigned.Version, unsigned.SignedBy = "1.5.0", ""
	if _, _, _, err := s.PutRelease(ctx, unsigned); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("unsigned release: %v", err)
	}
	if _, err := s.Release(ctx, "hello", "1.5.0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused release was stored: %v", err)
	}
	list, err := s.Releases(ctx, "hello")
	if err != nil || len(list) != 1 || list[0].SHA256 != "aa" {
		t.Fatalf("Releases = %+v %v", list, err)
	}
	if refs, err := s.ReferencedBlobs(ctx); err != nil || len(refs) != 1 || !refs["aa"] {
		t.Fatalf("ReferencedBlobs = %v %v", refs, err)
	}
	if list, _ := s.Releases(ctx, "other"); len(list) != 0 {
		t.Fatalf("Releases(other) = %+v", list)
	}
}

func testChannels(t *testing.T, s store.Store) {
	ctx := context.Background()
	put := func(v, blob string) {
		t.Helper()
		if _, _, _, err := s.PutRelease(ctx, api.Release{App: "hello", Version: v, Class: "minor", SHA256: blob, SignedBy: "K", CreatedAt: t0, Manifest: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}
	put("1.0.0", "a1")
	put("1.1.0", "a2")
	if _, err := s.Promote(ctx, "hello", "1.0.0", "production", false, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("skip a step without force: %v", err)
	}
	if _, err := s.Promote(ctx, "hello", "1.0.0", "unstable", false, t0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("promote into its own channel: %v", err)
	}
	if _, err := s.Promote(ctx, "hello", "1.0.0", "preview", false, t0); err != nil {
		t.Fatal(err)
	}
	if ev, err := s.Promote(ctx, "hello", "1.1.0", "production", true, t0); err != nil || ev.Fields()["forced"] != true {
		t.Fatalf("forced promote: %+v %v", ev, err)
	}
	if _, err := s.Promote(ctx, "hello", "9.9.9", "preview", false, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("promote a missing release: %v", err)
	}
	if _, err := s.CreateChannel(ctx, api.ChannelCreate{Name: "canary", After: "preview"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateChannel(ctx, api.ChannelCreate{Name: "canary", After: "preview"}, t0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate channel: %v", err)
	}
	if _, err := s.CreateChannel(ctx, api.ChannelCreate{Name: "x", After: "nope"}, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("channel after a missing one: %v", err)
	}
	ev, _, err := s.Withdraw(ctx, "hello", "1.1.0", "crashes on start", t0)
	if err != nil || len(withdrawn(ev).Channels) != 2 {
		t.Fatalf("withdraw: %+v %v", ev, err)
	}
	if _, _, err := s.Withdraw(ctx, "hello", "1.1.0", "again", t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("withdraw twice: %v", err)
	}
	if _, err := s.Promote(ctx, "hello", "1.1.0", "preview", true, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("promote a withdrawn release: %v", err)
	}
	rel, _, err := s.Republish(ctx, "hello", "1.0.0", "1:1.0.0", t0)
	if err != nil || rel.SHA256 != "a1" || rel.Channels[0] != "unstable" {
		t.Fatalf("republish: %+v %v", rel, err)
	}
	if _, _, err := s.Republish(ctx, "hello", "1.0.0", "1:1.0.0", t0); !errors.Is(err, store.ErrExists) {
		t.Fatalf("republish twice: %v", err)
	}
	chans, err := s.Channels(ctx, true)
	if err != nil || len(chans) != 4 {
		t.Fatalf("Channels = %+v %v", chans, err)
	}
	names := []string{}
	for _, c := range chans {
		names = append(names, c.Name)
	}
	if fmt.Sprint(names) != "[unstable preview canary production]" {
		t.Fatalf("channel order %v", names)
	}
	if fmt.Sprint(chans[0].Releases) != "[hello@1.0.0 hello@1:1.0.0]" || len(chans[3].Releases) != 0 {
		t.Fatalf("channel releases: %v / %v", chans[0].Releases, chans[3].Releases)
	}
	last := chans[3].History[len(chans[3].History)-1]
	if last.Action != "withdrawn" || last.Reason != "crashes on start" {
		t.Fatalf("production history: %+v", chans[3].History)
	}
}

func testAssignments(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	n1, n2 := enroll(t, s, "ams", "n1"), enroll(t, s, "ams", "n2")
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, _, _, err := s.PutRelease(ctx, api.Release{App: "hello", Version: v, Class: "minor", SHA256: "sum" + v, Size: 7,
			SignedBy: "K", Signature: "sig" + v, CreatedAt: t0, Manifest: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Assign(ctx, []string{"n1"}, "hello", "9.9.9", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("assign an unknown release: %v", err)
	}
	changed, ev, err := s.Assign(ctx, []string{"n1", "n2", "ghost"}, "hello", "1.0.0", t0)
	if err != nil || fmt.Sprint(changed) != "[n1 n2]" || ev.Type != "release.deployed" {
		t.Fatalf("Assign = %v %+v %v", changed, ev, err)
	}
	if changed, _, err := s.Assign(ctx, []string{"n1", "n2"}, "hello", "1.0.0", t0); err != nil || len(changed) != 0 {
		t.Fatalf("repeated Assign changed %v %v", changed, err)
	}
	n, err := s.Node(ctx, "n1")
	if err != nil || n.Generation != n1.Generation+1 || len(n.Assigned) != 1 {
		t.Fatalf("node after assign: %+v %v", n, err)
	}
	if a := n.Assigned[0]; a.App != "hello" || a.Version != "1.0.0" || a.SHA256 != "sum1.0.0" || a.Size != 7 || a.Signature != "sig1.0.0" || a.Withdrawn != "" {
		t.Fatalf("assignment %+v", a)
	}
	if _, _, err := s.Assign(ctx, []string{"n2"}, "hello", "1.1.0", t0); err != nil {
		t.Fatal(err)
	}
	// A label change keeps the assignments in the returned desired state.
	nodes, _, err := s.ChangeLabels(ctx, []string{"n2"}, map[string]string{"zone": "b"}, nil, t0)
	if err != nil || len(nodes) != 1 || len(nodes[0].Assigned) != 1 || nodes[0].Assigned[0].Version != "1.1.0" {
		t.Fatalf("ChangeLabels = %+v %v", nodes, err)
	}

	// So does a change to many nodes at once (filled in bulk).
	many := []string{"n1", "n2"}
	for i := 0; i < 70; i++ {
		many = append(many, enroll(t, s, "ams", fmt.Sprintf("m%02d", i)).Name)
	}
	nodes, _, err = s.ChangeLabels(ctx, many, map[string]string{"rack": "r9"}, nil, t0)
	if err != nil || len(nodes) != len(many) {
		t.Fatalf("bulk ChangeLabels = %d nodes, %v", len(nodes), err)
	}
	for _, n := range nodes {
		want := map[string]string{"n1": "1.0.0", "n2": "1.1.0"}[n.Name]
		if (want == "") != (len(n.Assigned) == 0) || (want != "" && n.Assigned[0].Version != want) {
			t.Fatalf("bulk ChangeLabels: %s assigned %+v", n.Name, n.Assigned)
		}
	}
	n1.Generation++
	n2.Generation++

	// Withdrawal marks the assignment and moves only the assigned nodes' generation.
	_, touched, err := s.Withdraw(ctx, "hello", "1.1.0", "bad", t0)
	if err != nil || fmt.Sprint(touched) != "[n2]" {
		t.Fatalf("Withdraw touched %v %v", touched, err)
	}
	all, err := s.Nodes(ctx)
	if err != nil || len(all) != len(many) {
		t.Fatal(len(all), err)
	}
	byName := map[string]api.Node{}
	for _, n := range all {
		byName[n.Name] = n
	}
	if n := byName["n1"]; n.Generation != n1.Generation+1 || n.Assigned[0].Withdrawn != "" {
		t.Fatalf("n1 after withdrawal of another release: %+v", n)
	}
	if n := byName["n2"]; n.Generation != n2.Generation+4 || n.Assigned[0].Withdrawn != "bad" {
		t.Fatalf("n2 after withdrawal: %+v", n)
	}
	if _, _, err := s.Assign(ctx, []string{"n1"}, "hello", "1.1.0", t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("assign a withdrawn release: %v", err)
	}

	// App reports: events for installs and new failures, none for a repeat.
	now := t0.Add(time.Minute)
	evs, err := s.SetApps(ctx, "n1", []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "sum1.0.0", InstalledAt: &now}}, now)
	if err != nil || len(evs) != 1 || evs[0].Type != "app.installed" || evs[0].Subject != "n1" {
		t.Fatalf("SetApps = %+v %v", evs, err)
	}
	if evs, err := s.SetApps(ctx, "n1", []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "sum1.0.0", InstalledAt: &now}}, now); err != nil || len(evs) != 0 {
		t.Fatalf("repeated report: %+v %v", evs, err)
	}
	failed := []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "sum1.0.0", InstalledAt: &now, Pending: "1.2.0", Error: "signature does not verify"}}
	if evs, err := s.SetApps(ctx, "n1", failed, now); err != nil || len(evs) != 1 || evs[0].Type != "app.failed" || evs[0].Fields()["version"] != "1.2.0" {
		t.Fatalf("failure report: %+v %v", evs, err)
	}
	n, _ = s.Node(ctx, "n1")
	if len(n.Apps) != 1 || n.Apps[0].Error == "" || n.Apps[0].InstalledAt == nil || !n.Apps[0].InstalledAt.Equal(now) {
		t.Fatalf("stored apps: %+v", n.Apps)
	}
	if _, err := s.SetApps(ctx, "ghost", nil, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("report of an unknown node: %v", err)
	}
}

// Unsigned releases live only in channels that allow them: pushed, promoted or republished.
func testUnsigned(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.SetAllowUnsigned(ctx, "nope", true, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown channel: %v", err)
	}
	ev, err := s.SetAllowUnsigned(ctx, "unstable", true, t0)
	if err != nil || ev.Type != "channel.changed" {
		t.Fatalf("SetAllowUnsigned = %+v %v", ev, err)
	}
	if ev, err := s.SetAllowUnsigned(ctx, "unstable", true, t0); err != nil || ev.Type != "" {
		t.Fatalf("unchanged SetAllowUnsigned = %+v %v", ev, err)
	}
	if _, _, _, err := s.PutRelease(ctx, api.Release{App: "dev", Version: "0.1.0", Class: "minor", SHA256: "d1", CreatedAt: t0, Manifest: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Promote(ctx, "dev", "0.1.0", "preview", false, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("unsigned promoted into a signed-only channel: %v", err)
	}
	if _, err := s.Promote(ctx, "dev", "0.1.0", "production", true, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("unsigned forced into a signed-only channel: %v", err)
	}
	if _, err := s.SetAllowUnsigned(ctx, "unstable", false, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("forbid unsigned while holding one: %v", err)
	}
	if _, err := s.SetAllowUnsigned(ctx, "preview", true, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Promote(ctx, "dev", "0.1.0", "preview", false, t0); err != nil {
		t.Fatalf("unsigned into a channel that allows it: %v", err)
	}
	if _, _, err := s.Withdraw(ctx, "dev", "0.1.0", "done testing", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAllowUnsigned(ctx, "unstable", false, t0); err != nil {
		t.Fatalf("forbid unsigned once none is left: %v", err)
	}
	if _, _, err := s.Republish(ctx, "dev", "0.1.0", "1:0.1.0", t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("unsigned republished into a signed-only channel: %v", err)
	}
	chans, _ := s.Channels(ctx, false)
	if chans[0].AllowUnsigned || !chans[1].AllowUnsigned {
		t.Fatalf("channels: %+v", chans)
	}
}

func withdrawn(ev api.Event) api.ReleaseWithdrawn {
	var p api.ReleaseWithdrawn
	ev.Decode(&p)
	return p
}
