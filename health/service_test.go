package health

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/internal/backend"
	"github.com/ferryhq/ferry/store"
)

func TestMain(m *testing.M) { os.Exit(backend.Main(m)) }

// fleet makes a site ams with nodes n1 (role=mirror) and n2 (role=edge).
func fleet(t *testing.T, st store.Store) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, CreatedAt: t0}); err != nil {
			return err
		}
		for name, role := range map[string]string{"n1": "mirror", "n2": "edge"} {
			if err := tx.InsertNode("ams", store.NodeRecord{Name: name, PublicKey: "pk-" + name, Labels: map[string]string{"role": role}}, t0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// eventsOf returns the types of the events after since.
func eventsOf(t *testing.T, st store.Store, since int64) ([]api.Event, []string) {
	t.Helper()
	evs, err := st.Events(context.Background(), since, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	return evs, types
}

// Adding a check gives the nodes it selects a new generation, names them in its event with the
// actor, and refuses a second of the name; removing it does the same for them.
func TestAddRemoveCheck(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := store.WithActor(context.Background(), store.Actor{ID: "token:op", Role: "admin"})
		fleet(t, st)
		s := New(Config{Store: st, Clock: clock.NewFake(t0)})
		c, ev, err := s.AddCheck(ctx, api.CheckSpec{Name: "disk-root", Selector: "role=mirror,site=ams", Disk: "/"})
		if err != nil {
			t.Fatal(err)
		}
		var p api.CheckAdded
		if ev.Type != api.EventCheckAdded || ev.Actor != "token:op" || ev.Decode(&p) != nil || !slices.Equal(p.Nodes, []string{"n1"}) || p.Check.Name != c.Name {
			t.Fatalf("event %+v, payload %+v", ev, p)
		}
		if n, _ := st.Node(ctx, "n1"); n.Generation != 2 {
			t.Fatalf("n1 at generation %d, want 2", n.Generation)
		}
		if n, _ := st.Node(ctx, "n2"); n.Generation != 1 {
			t.Fatalf("n2 at generation %d, want 1", n.Generation)
		}
		if _, _, err := s.AddCheck(ctx, c); !errors.Is(err, fault.ErrConflict) {
			t.Fatalf("second add: %v", err)
		}
		list, err := s.ListChecks(ctx)
		if err != nil || len(list) != 1 || list[0].Name != "disk-root" || len(list[0].Results) != 0 {
			t.Fatalf("list = %+v, %v", list, err)
		}
		evs, err := s.RemoveCheck(ctx, "disk-root")
		if err != nil || len(evs) != 1 || evs[0].Type != api.EventCheckRemoved || evs[0].Actor != "token:op" {
			t.Fatalf("remove: %+v, %v", evs, err)
		}
		if n, _ := st.Node(ctx, "n1"); n.Generation != 3 {
			t.Fatalf("n1 at generation %d, want 3", n.Generation)
		}
		if _, err := s.RemoveCheck(ctx, "disk-root"); !errors.Is(err, fault.ErrNotFound) {
			t.Fatalf("second remove: %v", err)
		}
	})
}

// A soft CRITICAL raises nothing; a hard one records check.state and raises an alert at once;
// an acknowledged alert raises nothing more when its state changes; OK clears it. A flapping
// check records check.flapping and raises no alert. Node and site health follow.
func TestAlerts(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		fleet(t, st)
		clk := clock.NewFake(t0)
		s := New(Config{Store: st, Clock: clk, Allowed: func(node, check, app string) bool { return check != "other" }})
		node := store.WithActor(context.Background(), store.Actor{ID: "node:n1"})
		op := store.WithActor(context.Background(), store.Actor{ID: "token:op", Role: "admin"})
		ingest := func(rs ...api.CheckResult) {
			t.Helper()
			for i := range rs {
				rs[i].Time = clk.Now()
			}
			if err := s.Ingest(node, "n1", rs); err != nil {
				t.Fatal(err)
			}
		}
		last, _ := st.LastEventID(node)
		ingest(api.CheckResult{Check: "load", State: api.CheckCritical, Attempt: 1, Output: "LOAD CRITICAL"},
			api.CheckResult{Check: "other", State: api.CheckCritical, Hard: true})
		if _, types := eventsOf(t, st, last); len(types) != 0 {
			t.Fatalf("a soft state and an unassigned check recorded %v", types)
		}
		ingest(api.CheckResult{Check: "load", State: api.CheckCritical, Hard: true, Attempt: 3, Output: "LOAD CRITICAL"})
		evs, types := eventsOf(t, st, last)
		if !slices.Equal(types, []string{api.EventCheckState, api.EventAlertRaised}) || evs[1].Actor != "node:n1" {
			t.Fatalf("events %v", evs)
		}
		var cs api.CheckStateChanged
		if evs[0].Decode(&cs) != nil || cs != (api.CheckStateChanged{Node: "n1", Check: "load", From: api.CheckOK, To: api.CheckCritical, Output: "LOAD CRITICAL"}) {
			t.Fatalf("check.state %+v", cs)
		}
		// Written at once, before any flush.
		if rs, _ := st.CheckResults(node); len(rs) != 1 || rs[0].State != api.CheckCritical {
			t.Fatalf("stored results %+v", rs)
		}
		alerts, err := s.Alerts(op, false)
		if err != nil || len(alerts) != 1 || alerts[0].State != api.CheckCritical || alerts[0].Check != "load" {
			t.Fatalf("alerts %+v, %v", alerts, err)
		}
		nodes, _ := st.Nodes(op)
		if err := s.Annotate(op, nodes); err != nil {
			t.Fatal(err)
		}
		sites, _ := st.Sites(op)
		AnnotateSites(sites, nodes)
		if nodes[0].Health != api.HealthCritical || nodes[1].Health != api.HealthOK || sites[0].Health != api.HealthCritical {
			t.Fatalf("health: %s %s, site %s", nodes[0].Health, nodes[1].Health, sites[0].Health)
		}

		a, ev, err := s.Ack(op, alerts[0].ID, "disk swap planned")
		if err != nil || a.AckedBy != "token:op" || ev.Type != api.EventAlertAcked || ev.Actor != "token:op" {
			t.Fatalf("ack: %+v %+v %v", a, ev, err)
		}
		if _, _, err := s.Ack(op, alerts[0].ID, ""); !errors.Is(err, fault.ErrConflict) {
			t.Fatalf("second ack: %v", err)
		}
		if _, _, err := s.Ack(op, 999, ""); !errors.Is(err, fault.ErrNotFound) {
			t.Fatalf("ack of no alert: %v", err)
		}
		last = ev.ID
		ingest(api.CheckResult{Check: "load", State: api.CheckWarning, Hard: true, Attempt: 3})
		if _, types := eventsOf(t, st, last); !slices.Equal(types, []string{api.EventCheckState}) {
			t.Fatalf("an acknowledged alert's change recorded %v", types)
		}
		evs, _ = eventsOf(t, st, last)
		last = evs[len(evs)-1].ID
		ingest(api.CheckResult{Check: "load", State: api.CheckOK})
		evs, types = eventsOf(t, st, last)
		if !slices.Equal(types, []string{api.EventCheckState, api.EventAlertCleared}) {
			t.Fatalf("recovery recorded %v", types)
		}
		last = evs[len(evs)-1].ID
		if open, _ := s.Alerts(op, false); len(open) != 0 {
			t.Fatalf("open alerts after OK: %+v", open)
		}

		ingest(api.CheckResult{Check: "load", State: api.CheckCritical, Hard: true, Attempt: 3, Flapping: true})
		evs, types = eventsOf(t, st, last)
		if !slices.Equal(types, []string{api.EventCheckFlapping, api.EventCheckState}) {
			t.Fatalf("flapping recorded %v", types)
		}
		last = evs[len(evs)-1].ID
		ingest(api.CheckResult{Check: "load", State: api.CheckCritical, Hard: true, Attempt: 3})
		if _, types := eventsOf(t, st, last); !slices.Equal(types, []string{api.EventCheckFlapping, api.EventAlertRaised}) {
			t.Fatalf("the end of flapping recorded %v", types)
		}

		if err := s.Ingest(node, "n1", []api.CheckResult{{Check: "load", State: "bad", Time: t0}}); !errors.Is(err, fault.ErrInvalid) {
			t.Fatalf("a malformed result: %v", err)
		}
	})
}

// History: results fold into five-minute and hour buckets, written by Flush; a restarted service
// judges state changes against what the store holds; Prune forgets old buckets.
func TestHistory(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		fleet(t, st)
		clk := clock.NewFake(t0)
		s := New(Config{Store: st, Clock: clk})
		for i := range 6 { // two results a bucket for three buckets
			st := api.CheckOK
			if i == 3 {
				st = api.CheckWarning
			}
			r := api.CheckResult{Check: "load", State: st, Hard: true, Time: clk.Now(), Perf: []api.CheckPerf{{Label: "load1", Value: float64(i)}}}
			if err := s.Ingest(ctx, "n1", []api.CheckResult{r}); err != nil {
				t.Fatal(err)
			}
			clk.Advance(150 * time.Second)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := st.CheckHistory(ctx, "n1", "load", 5*time.Minute, t0)
		if err != nil || len(got) != 3 {
			t.Fatalf("five-minute buckets %+v, %v", got, err)
		}
		want := []struct {
			worst string
			min   float64
			avg   float64
		}{{api.CheckOK, 0, 0.5}, {api.CheckWarning, 2, 2.5}, {api.CheckOK, 4, 4.5}}
		for i, w := range want {
			if b := got[i]; b.Count != 2 || b.Worst != w.worst || len(b.Perf) != 1 || b.Perf[0].Min != w.min || b.Perf[0].Avg != w.avg || !b.Start.Equal(t0.Add(time.Duration(i)*5*time.Minute)) {
				t.Errorf("bucket %d = %+v", i, b)
			}
		}
		hours, err := s.History(ctx, "n1", "load", t0.Add(-72*time.Hour))
		if err != nil || len(hours) != 1 || hours[0].Count != 6 || hours[0].Worst != api.CheckWarning {
			t.Fatalf("hour buckets %+v, %v", hours, err)
		}
		if rs, _ := st.CheckResults(ctx); len(rs) != 1 || rs[0].Perf[0].Value != 5 {
			t.Fatalf("latest result after flush: %+v", rs)
		}
		if got, _ := st.CheckHistory(ctx, "n1", "load", time.Hour, time.Time{}); len(got) != 0 {
			t.Fatalf("the hour in progress written before it ended: %+v", got)
		}
		if err := s.FlushAll(ctx); err != nil { // as the server stops
			t.Fatal(err)
		}

		// A restart: the stored hard state is OK, so OK again records nothing.
		s2 := New(Config{Store: st, Clock: clk})
		if err := s2.Load(ctx); err != nil {
			t.Fatal(err)
		}
		last, _ := st.LastEventID(ctx)
		if err := s2.Ingest(ctx, "n1", []api.CheckResult{{Check: "load", State: api.CheckOK, Time: clk.Now()}}); err != nil {
			t.Fatal(err)
		}
		if _, types := eventsOf(t, st, last); len(types) != 0 {
			t.Fatalf("an unchanged state after a restart recorded %v", types)
		}

		clk.Advance(49 * time.Hour)
		if err := s.Prune(ctx); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.CheckHistory(ctx, "n1", "load", 5*time.Minute, time.Time{}); len(got) != 0 {
			t.Fatalf("five-minute buckets after two days: %+v", got)
		}
		if got, _ := st.CheckHistory(ctx, "n1", "load", time.Hour, time.Time{}); len(got) != 1 {
			t.Fatalf("hour buckets after two days: %+v", got)
		}
	})
}

// The fleet's checks by hard state are sampled at a flush every five minutes, and kept two days.
func TestTrend(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		fleet(t, st)
		clk := clock.NewFake(t0)
		s := New(Config{Store: st, Clock: clk})
		ingest := func(node, state string) {
			t.Helper()
			if err := s.Ingest(ctx, node, []api.CheckResult{{Check: "load", State: state, Hard: true, Attempt: 1, Time: clk.Now()}}); err != nil {
				t.Fatal(err)
			}
		}
		flush := func() {
			t.Helper()
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		ingest("n1", api.CheckOK)
		ingest("n2", api.CheckCritical)
		flush()
		clk.Advance(2 * time.Minute)
		ingest("n2", api.CheckOK)
		flush() // within five minutes of the last sample: none
		clk.Advance(3 * time.Minute)
		flush()
		tr := s.Trend()
		if len(tr) != 2 || !tr[0].Time.Equal(t0) || !tr[1].Time.Equal(t0.Add(5*time.Minute)) {
			t.Fatalf("trend %+v", tr)
		}
		if c := tr[0].Counts; c[api.CheckOK] != 1 || c[api.CheckCritical] != 1 || c[api.CheckWarning] != 0 {
			t.Fatalf("first sample %v", c)
		}
		if c := tr[1].Counts; c[api.CheckOK] != 2 || c[api.CheckCritical] != 0 {
			t.Fatalf("second sample %v", c)
		}
		for range 600 { // past two days of samples
			clk.Advance(trendEvery)
			flush()
		}
		if tr = s.Trend(); len(tr) != int(trendKeep/trendEvery) || !tr[len(tr)-1].Time.Equal(clk.Now()) {
			t.Fatalf("after two days and more: %d samples, the last at %v", len(tr), tr[len(tr)-1].Time)
		}
	})
}
