// Package storetest is the suite every store.Store backend must pass; each backend's tests call
// Run with a constructor for empty stores.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// Run runs the suite, RunTx's tests included; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tt := range suite() {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
	t.Run("Tx", func(t *testing.T) { RunTx(t, open) })
}

type suiteTest struct {
	name string
	fn   func(*testing.T, store.Store)
}

func suite() []suiteTest {
	return []suiteTest{
		{"Inventory", testInventory},
		{"SiteLabels", testSiteLabels},
		{"Events", testEvents},
		{"SubjectEvents", testSubjectEvents},
		{"EventActor", testEventActor},
		{"Watch", testWatch},
		{"SpendNonce", testSpendNonce},
		{"Assigned", testAssigned},
		{"Secrets", testSecrets},
		{"Replicas", testReplicas},
		{"Rollouts", testRollouts},
		{"Webhooks", testWebhooks},
		{"Checks", testChecks},
		{"Alerts", testAlerts},
		{"AppCounts", testAppCounts},
		{"Probes", testProbes},
		{"PruneProbes", testPruneProbes},
	}
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func addSite(t *testing.T, s store.Store, name string, tier int) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.InsertSite(api.Site{Name: name, Tier: tier, Lat: ptr(52.37), Lon: ptr(4.9), CreatedAt: t0})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// enroll records a node of site as enrollment does, without its rules.
func enroll(t *testing.T, s store.Store, site, name string) api.Node {
	t.Helper()
	ctx := context.Background()
	err := s.Update(ctx, func(tx store.Tx) error {
		return tx.InsertNode(site, store.NodeRecord{Name: name, PublicKey: "pk-" + name, Labels: map[string]string{"role": "mirror"}}, t0)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Node(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// appendEvent appends one event under ctx.
func appendEvent(t *testing.T, ctx context.Context, s store.Store, e api.Event) api.Event {
	t.Helper()
	e, err := store.AppendEvent(ctx, s, e)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ids []int64
	for i := 0; i < 5; i++ {
		e, err := store.AppendEvent(ctx, s, api.NewEvent(t0, "test", "x", api.BlobCollected{Size: int64(i)}))
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

// A subject's events come newest first, at most limit of them, and none about another subject.
func testSubjectEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	var mine []int64
	for i := range 5 {
		subject := "n1"
		if i%2 == 1 {
			subject = "n2"
		}
		e := appendEvent(t, ctx, s, api.NewEvent(t0, "test", subject, api.BlobCollected{Size: int64(i)}))
		if subject == "n1" {
			mine = append(mine, e.ID)
		}
	}
	evs, err := s.SubjectEvents(ctx, "n1", 2)
	if err != nil || len(evs) != 2 || evs[0].ID != mine[2] || evs[1].ID != mine[1] || evs[0].Subject != "n1" || evs[0].Fields()["size"] != float64(4) {
		t.Fatalf("SubjectEvents(n1, 2) = %+v %v", evs, err)
	}
	if evs, err := s.SubjectEvents(ctx, "nobody", 10); err != nil || len(evs) != 0 {
		t.Fatalf("SubjectEvents(nobody) = %+v %v", evs, err)
	}
}

// The feed returns every event after its start once, in order, and waits for the next write
// when it has returned them all; a write committed while nobody waits is not missed.
func testWatch(t *testing.T, s store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := store.AppendEvent(ctx, s, api.Event{Time: t0, Type: "test", Subject: "a"})
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
	second, err := store.AppendEvent(ctx, s, api.Event{Time: t0, Type: "test", Subject: "b"})
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
		e, err := store.AppendEvent(ctx, s, api.Event{Time: t0, Type: "test", Subject: sub})
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

// Every event appended carries the actor of the transaction's context, in what AppendEvents
// returns and in the log, whatever the event held; a context without one is the system's.
func testEventActor(t *testing.T, s store.Store) {
	admin := store.Actor{ID: "token:abc", Role: "admin", Source: "127.0.0.1:5555"}
	node := store.Actor{ID: "node:n1", Source: "10.0.0.7:40000"}
	want := map[int64]store.Actor{} // event id -> actor
	for _, tc := range []struct {
		ctx   context.Context
		actor store.Actor
	}{
		{store.WithActor(context.Background(), admin), admin},
		{store.WithActor(context.Background(), node), node},
		{context.Background(), store.System},
		{store.WithActor(context.Background(), store.Actor{}), store.System},
	} {
		var evs []api.Event
		err := s.Update(tc.ctx, func(tx store.Tx) (err error) {
			evs, err = tx.AppendEvents(api.Event{Time: t0, Type: "test", Subject: "a", Actor: "token:forged", Role: "admin", Source: "1.2.3.4:5"},
				api.Event{Time: t0, Type: "test", Subject: "b"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[1].ID != evs[0].ID+1 {
			t.Fatalf("AppendEvents = %+v", evs)
		}
		for _, ev := range evs {
			if ev.Actor != tc.actor.ID || ev.Role != tc.actor.Role || ev.Source != tc.actor.Source {
				t.Fatalf("event %s: actor %q role %q source %q, want %+v", ev.Subject, ev.Actor, ev.Role, ev.Source, tc.actor)
			}
			want[ev.ID] = tc.actor
		}
	}
	ev := appendEvent(t, store.WithActor(context.Background(), admin), s, api.Event{Time: t0, Type: "test", Subject: "c"})
	want[ev.ID] = admin
	log, err := s.Events(context.Background(), 0, 1000)
	if err != nil || len(log) != len(want) {
		t.Fatalf("log has %d events (%v), the writes returned %d", len(log), err, len(want))
	}
	for _, e := range log {
		a, ok := want[e.ID]
		if !ok || e.Actor != a.ID || e.Role != a.Role || e.Source != a.Source {
			t.Fatalf("logged event %d: actor %q role %q source %q, want %+v", e.ID, e.Actor, e.Role, e.Source, a)
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

// Assignments come with the nodes read back, one or all (filled in bulk for many).
func testAssigned(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	n1 := enroll(t, s, "ams", "n1")
	enroll(t, s, "ams", "n2")
	assign := func(nodes []string, version string) {
		t.Helper()
		err := s.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.Release("hello", version); errors.Is(err, store.ErrNotFound) {
				err = tx.InsertRelease(api.Release{App: "hello", Version: version, Class: "minor", SHA256: "sum" + version, Size: 7,
					SignedBy: "K", Signature: "sig" + version, CreatedAt: t0, Manifest: map[string]any{}})
				if err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			_, err := tx.AssignNodes(nodes, "hello", version, "", t0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	assign([]string{"n1"}, "1.0.0")
	assign([]string{"n2"}, "1.1.0")
	n, err := s.Node(ctx, "n1")
	if err != nil || n.Generation != n1.Generation+1 || len(n.Assigned) != 1 {
		t.Fatalf("node after assign: %+v %v", n, err)
	}
	if a := n.Assigned[0]; a.App != "hello" || a.Version != "1.0.0" || a.SHA256 != "sum1.0.0" || a.Size != 7 || a.Signature != "sig1.0.0" || a.Withdrawn != "" {
		t.Fatalf("assignment %+v", a)
	}
	many := []string{"n1", "n2"}
	for i := 0; i < 70; i++ {
		many = append(many, enroll(t, s, "ams", fmt.Sprintf("m%02d", i)).Name)
	}
	all, err := s.Nodes(ctx)
	if err != nil || len(all) != len(many) {
		t.Fatal(len(all), err)
	}
	for _, n := range all {
		want := map[string]string{"n1": "1.0.0", "n2": "1.1.0"}[n.Name]
		if (want == "") != (len(n.Assigned) == 0) || (want != "" && n.Assigned[0].Version != want) {
			t.Fatalf("%s assigned %+v", n.Name, n.Assigned)
		}
	}
	// NodesNamed reads what Node reads, for the names that exist, and skips the others.
	named, err := s.NodesNamed(ctx, []string{"n2", "m05", "nowhere"})
	if err != nil || len(named) != 2 {
		t.Fatalf("NodesNamed = %v %v", named, err)
	}
	for _, name := range []string{"n2", "m05"} {
		one, err := s.Node(ctx, name)
		if err != nil || !reflect.DeepEqual(named[name], one) {
			t.Fatalf("NodesNamed[%s] = %+v, Node = %+v %v", name, named[name], one, err)
		}
	}
	if none, err := s.NodesNamed(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("NodesNamed(nil) = %v %v", none, err)
	}
	// NodeStates reads the status and apps Node reads, of the names that exist or of every node.
	update(t, ctx, s, func(tx store.Tx) error {
		return tx.SetNodeApps("n2", []api.NodeApp{{App: "hello", Version: "1.1.0", State: api.AppStateRunning}})
	})
	update(t, ctx, s, func(tx store.Tx) error { return tx.SetNodeStatus("m05", api.StatusDown) })
	states, err := s.NodeStates(ctx, []string{"n2", "m05", "nowhere"})
	if err != nil || len(states) != 2 {
		t.Fatalf("NodeStates = %v %v", states, err)
	}
	for _, name := range []string{"n2", "m05"} {
		one, err := s.Node(ctx, name)
		if err != nil || states[name].Status != one.Status || !reflect.DeepEqual(states[name].Apps, one.Apps) {
			t.Fatalf("NodeStates[%s] = %+v, Node = %+v %v", name, states[name], one, err)
		}
	}
	if states["m05"].Status != api.StatusDown || len(states["n2"].Apps) != 1 {
		t.Fatalf("NodeStates = %+v", states)
	}
	if every, err := s.NodeStates(ctx, nil); err != nil || len(every) != len(many) {
		t.Fatalf("NodeStates(nil) = %d nodes, %v; want %d", len(every), err, len(many))
	}
}
