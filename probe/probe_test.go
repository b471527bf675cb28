package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/store"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func names(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("n%02d", i))
	}
	return out
}

// Step keeps each node in one link at a time and at most MaxProbeParallel links running, and
// goes through every link of the full matrix, each once.
func TestStepSchedulesEveryLinkOnce(t *testing.T) {
	for _, n := range []int{2, 3, 7, api.MaxProbeNodes} {
		nodes := names(n)
		d := newDoc(api.ProbeStart{Bytes: api.MinProbeBytes, Duration: api.Duration(time.Second)}, nodes)
		if len(d.Links) != n*(n-1)/2 {
			t.Fatalf("%d nodes: %d links", n, len(d.Links))
		}
		up := map[string]string{}
		for _, name := range nodes {
			up[name] = api.StatusUp
		}
		started := map[int]bool{}
		now := t0
		for round := 0; d.CompletedAt == nil; round++ {
			if round > len(d.Links) {
				t.Fatalf("%d nodes: no end after %d rounds", n, round)
			}
			evs, _ := Step(&d, 1, up, now)
			busy := map[string]bool{}
			running := 0
			for i, l := range d.Links {
				if !l.active() {
					continue
				}
				if busy[l.From] || busy[l.To] {
					t.Fatalf("%d nodes: link %d shares a node with another running", n, i)
				}
				busy[l.From], busy[l.To] = true, true
				running++
			}
			if running > api.MaxProbeParallel || running == 0 && d.CompletedAt == nil {
				t.Fatalf("%d nodes: %d links running", n, running)
			}
			for _, e := range evs {
				var p api.ProbeLinkStarted
				if e.Type == api.EventProbeLinkStarted && e.Decode(&p) == nil {
					if started[p.Link] {
						t.Fatalf("link %d started twice", p.Link)
					}
					started[p.Link] = true
				}
			}
			// Every running link reports at once.
			for i := range d.Links {
				if d.Links[i].active() {
					d.Links[i].State = api.LinkDone
				}
			}
			now = now.Add(time.Second)
		}
		if len(started) != len(d.Links) {
			t.Fatalf("%d nodes: %d of %d links started", n, len(started), len(d.Links))
		}
	}
}

// Links of a node that is down fail at once; a link whose nodes are silent past its deadline
// fails, with the node named; the probe completes, and asks to be woken at the deadline.
func TestStepFailsDownAndSilentNodes(t *testing.T) {
	d := newDoc(api.ProbeStart{Bytes: api.MinProbeBytes, Duration: api.Duration(time.Second)}, []string{"a", "b", "c"})
	status := map[string]string{"a": api.StatusUp, "b": api.StatusUp, "c": api.StatusDown}
	evs, wake := Step(&d, 7, status, t0)
	if d.Links[0].State != api.LinkRunning || d.Links[1].Error != "node c is down" || d.Links[2].Error != "node c is down" {
		t.Fatalf("links %+v", d.Links)
	}
	if want := t0.Add(time.Second + api.ProbeSetup); !wake.Equal(want) || len(evs) != 3 {
		t.Fatalf("wake %v, want %v; events %+v", wake, want, evs)
	}
	if evs, _ := Step(&d, 7, status, wake.Add(-time.Nanosecond)); len(evs) != 0 {
		t.Fatalf("before the deadline: %+v", evs)
	}
	evs, wake = Step(&d, 7, status, wake)
	if d.Links[0].Error != "node b did not open its listener in time" || d.CompletedAt == nil || !wake.IsZero() {
		t.Fatalf("after the deadline: %+v, wake %v", d, wake)
	}
	var c api.ProbeCompleted
	if last := evs[len(evs)-1]; last.Type != api.EventProbeCompleted || last.Decode(&c) != nil || c != (api.ProbeCompleted{Links: 3, Failed: 3}) {
		t.Fatalf("events %+v", evs)
	}
}

// rig is a probe service and engine over a real SQLite store, on a fake clock, with nodes of
// one site.
type rig struct {
	t   *testing.T
	ctx context.Context
	st  store.Store
	clk *clock.Fake
	svc *Service
	eng *Engine
}

func newRig(t *testing.T, nodes ...string) *rig {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, CreatedAt: t0}); err != nil {
			return err
		}
		for _, n := range nodes {
			if err := tx.InsertNode("ams", store.NodeRecord{Name: n, PublicKey: "pk-" + n}, t0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(t0)
	return &rig{t: t, ctx: ctx, st: st, clk: clk, svc: New(st, clk), eng: NewEngine(st, clk, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

func (r *rig) step() time.Time {
	r.t.Helper()
	wake, err := r.eng.StepAll(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return wake
}

// The service takes reports only from the link's own nodes, in order; a link whose listener
// reports but whose connecting side stays silent fails at its deadline on the clock; and the
// probe completes with the pairs as measured.
func TestServiceAndEngine(t *testing.T) {
	r := newRig(t, "a", "b", "c")
	node := store.WithActor(r.ctx, store.Actor{ID: "token:op"})
	p, _, err := r.svc.Start(node, api.ProbeStart{Selector: "site=ams", Bytes: api.MinProbeBytes, Duration: api.Duration(time.Second)})
	if err != nil || p.Links != 3 || len(p.Pairs) != 6 || p.State != api.ProbeStateRunning || p.CreatedBy != "token:op" || p.Event == 0 {
		t.Fatalf("start %+v, %v", p, err)
	}
	wake := r.step() // starts a–b; the others wait for a and b
	ab := api.ProbeLinkRef{Probe: p.ID, Link: 0}
	ok := api.ProbeResult{RTTms: api.RTT{Min: 0.1, Avg: 0.2, Max: 0.5}, UpMbps: 900, DownMbps: 800}
	cases := []struct {
		name string
		do   func() error
		kind error
	}{
		{"result before the listener", func() error { _, err := r.svc.Report(r.ctx, "a", ab, ok); return err }, fault.ErrConflict},
		{"listener of another node", func() error {
			_, err := r.svc.Listening(r.ctx, "c", ab, "127.0.0.1", api.ProbeListening{Port: 5000})
			return err
		}, fault.ErrForbidden},
		{"From says it listens", func() error {
			_, err := r.svc.Listening(r.ctx, "a", ab, "127.0.0.1", api.ProbeListening{Port: 5000})
			return err
		}, fault.ErrForbidden},
		{"unknown link", func() error {
			_, err := r.svc.Listening(r.ctx, "b", api.ProbeLinkRef{Probe: p.ID, Link: 3}, "127.0.0.1", api.ProbeListening{Port: 5000})
			return err
		}, fault.ErrNotFound},
		{"unknown probe", func() error {
			_, err := r.svc.Listening(r.ctx, "b", api.ProbeLinkRef{Probe: 99, Link: 0}, "127.0.0.1", api.ProbeListening{Port: 5000})
			return err
		}, fault.ErrNotFound},
		{"bad port", func() error { _, err := r.svc.Listening(r.ctx, "b", ab, "127.0.0.1", api.ProbeListening{}); return err }, fault.ErrInvalid},
	}
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, c.kind) {
			t.Errorf("%s: %v, want %v", c.name, err, c.kind)
		}
	}
	ev, err := r.svc.Listening(r.ctx, "b", ab, "127.0.0.1", api.ProbeListening{Port: 5000})
	var l api.ProbeLinkListening
	if err != nil || ev.Type != api.EventProbeLinkListening || ev.Subject != "a" || ev.Decode(&l) != nil || l.Addr != "127.0.0.1:5000" || l.From != "a" || l.To != "b" {
		t.Fatalf("listening: %+v, %v", ev, err)
	}
	if _, err := r.svc.Report(r.ctx, "b", ab, ok); !errors.Is(err, fault.ErrForbidden) {
		t.Fatalf("result from the listener: %v", err)
	}
	if _, err := r.svc.Report(r.ctx, "a", ab, ok); err != nil {
		t.Fatal(err)
	}
	r.step() // starts a–c (b–c waits for c)
	ac := api.ProbeLinkRef{Probe: p.ID, Link: 1}
	if _, err := r.svc.Listening(r.ctx, "c", ac, "127.0.0.1", api.ProbeListening{Port: 5001}); err != nil {
		t.Fatal(err)
	}
	// a never reports: the link fails at its deadline.
	r.clk.Advance(wake.Sub(t0) + time.Second)
	r.step() // fails a–c, starts b–c
	bc := api.ProbeLinkRef{Probe: p.ID, Link: 2}
	if _, err := r.svc.Listening(r.ctx, "c", bc, "127.0.0.1", api.ProbeListening{Error: "no ports"}); err != nil {
		t.Fatal(err)
	}
	if wake := r.step(); !wake.IsZero() {
		t.Fatalf("wake %v after the last link", wake)
	}
	got, err := r.svc.Get(r.ctx, p.ID)
	if err != nil || got.State != api.ProbeStateCompleted || got.Done != 1 || got.Failed != 2 || got.CompletedAt == nil {
		t.Fatalf("probe %+v, %v", got, err)
	}
	want := map[string]string{
		"a>b": "900 0.2 ", "b>a": "800 0.2 ",
		"a>c": "0 0 node a reported no result in time", "c>a": "0 0 node a reported no result in time",
		"b>c": "0 0 node c could not listen: no ports", "c>b": "0 0 node c could not listen: no ports",
	}
	for _, pr := range got.Pairs {
		if s := fmt.Sprintf("%v %v %s", pr.Mbps, pr.RTTms.Avg, pr.Error); s != want[pr.From+">"+pr.To] {
			t.Errorf("%s → %s: %q, want %q", pr.From, pr.To, s, want[pr.From+">"+pr.To])
		}
	}
	if _, err := r.svc.Report(r.ctx, "a", ac, ok); !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("a late result: %v", err)
	}
}

// A probe takes between 2 and MaxProbeNodes nodes, revoked ones aside.
func TestStartBounds(t *testing.T) {
	r := newRig(t, names(api.MaxProbeNodes+1)...)
	if _, _, err := r.svc.Start(r.ctx, api.ProbeStart{Selector: "site=ams"}); !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "at most 32") {
		t.Fatalf("33 nodes: %v", err)
	}
	if err := r.st.Update(r.ctx, func(tx store.Tx) error { return tx.SetNodeStatus("n00", api.StatusRevoked) }); err != nil {
		t.Fatal(err)
	}
	p, _, err := r.svc.Start(r.ctx, api.ProbeStart{Selector: "site=ams"})
	if err != nil || len(p.Nodes) != api.MaxProbeNodes || p.Bytes != api.DefaultProbeBytes || time.Duration(p.Duration) != api.DefaultProbeDuration {
		t.Fatalf("32 nodes: %+v, %v", p.Nodes, err)
	}
	for _, req := range []api.ProbeStart{
		{Selector: "site=nowhere"},
		{Selector: "site=ams", Bytes: api.MaxProbeBytes + 1},
		{Selector: "site=ams", Duration: api.Duration(time.Hour)},
		{Selector: "site=="},
	} {
		if _, _, err := r.svc.Start(r.ctx, req); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("%+v: %v", req, err)
		}
	}
}

// The engine runs on its own: stirred by the start, it starts the link, and on the clock fails
// it at its deadline when no agent answers, completing the probe.
func TestEngineRunsOnTheClock(t *testing.T) {
	r := newRig(t, "a", "b")
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	ran := make(chan struct{})
	go func() { defer close(ran); r.eng.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	p, ev, err := r.svc.Start(store.WithActor(r.ctx, store.Actor{ID: "token:op"}), api.ProbeStart{Selector: "site=ams", Bytes: api.MinProbeBytes, Duration: api.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	r.eng.Stir(ev)
	feed := store.Watch(r.st, ev.ID)
	next := func(typ string) api.Event {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		for {
			evs, err := feed.Next(wctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", typ, err)
			}
			for _, e := range evs {
				if e.Type == typ {
					return e
				}
			}
		}
	}
	if e := next(api.EventProbeLinkStarted); e.Subject != "b" || e.Actor != store.System.ID {
		t.Fatalf("started %+v", e)
	}
	if err := r.clk.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(time.Second + api.ProbeSetup)
	next(api.EventProbeCompleted)
	got, err := r.svc.Get(r.ctx, p.ID)
	if err != nil || got.State != api.ProbeStateCompleted || got.Pairs[0].Error != "node b did not open its listener in time" {
		t.Fatalf("probe %+v, %v", got, err)
	}
}

// Prune forgets a completed probe once it is Retention old on the clock, but keeps the newest
// MaxProbeList whatever their age, and every open one.
func TestPruneKeepsTheNewest(t *testing.T) {
	r := newRig(t)
	closed := store.ProbeRecord{Doc: []byte(`{}`), State: api.ProbeStateCompleted, CreatedAt: t0, CreatedBy: "token:op", UpdatedAt: t0}
	open := closed
	open.State, open.Open = api.ProbeStateRunning, true
	err := r.st.Update(r.ctx, func(tx store.Tx) error {
		for i := range store.MaxProbeList + 3 {
			rec := closed
			if i == 1 {
				rec = open
			}
			if _, err := tx.InsertProbe(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(Retention)
	if n, err := r.svc.Prune(r.ctx); err != nil || n != 0 {
		t.Fatalf("pruned %d at the retention, %v; want none", n, err)
	}
	r.clk.Advance(time.Second)
	if n, err := r.svc.Prune(r.ctx); err != nil || n != 2 {
		t.Fatalf("pruned %d past the retention, %v; want 2 (the open one and the newest %d stay)", n, err, store.MaxProbeList)
	}
	if _, err := r.svc.Get(r.ctx, 2); err != nil {
		t.Fatalf("the open probe: %v", err)
	}
	for _, id := range []int64{1, 3} {
		if _, err := r.svc.Get(r.ctx, id); !errors.Is(err, fault.ErrNotFound) {
			t.Fatalf("probe %d: %v; want it pruned", id, err)
		}
	}
}
