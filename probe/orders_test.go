package probe

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Orders, loaded from the store or fed events, hands each waiting order once per stream of its
// node, within the link's time; an event brought again changes nothing.
func TestOrders(t *testing.T) {
	r := newRig(t, "a", "b", "c")
	p, _, err := r.svc.Start(r.ctx, api.ProbeStart{Selector: "site=ams", Bytes: api.MinProbeBytes, Duration: api.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := r.step() // starts a–b: b is to listen
	ab := api.ProbeLinkRef{Probe: p.ID, Link: 0}
	due := func(o *Orders, node, stream string) string {
		t.Helper()
		var s []string
		for _, o := range o.Due(node, stream) {
			s = append(s, fmt.Sprintf("%d/%d %s %s %s", o.Probe, o.Link, o.Role, o.Peer, o.Addr))
		}
		return fmt.Sprint(s)
	}
	listen, connect := fmt.Sprintf("[%d/0 listen a ]", p.ID), fmt.Sprintf("[%d/0 connect b 127.0.0.1:5000]", p.ID)

	early := NewOrders(r.st, r.clk)
	if err := early.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ node, stream, want string }{
		{"b", "s1", listen}, {"b", "s1", "[]"}, {"b", "s2", listen}, {"a", "s1", "[]"}, {"c", "s1", "[]"},
	} {
		if got := due(early, c.node, c.stream); got != c.want {
			t.Fatalf("%s on %s: %s, want %s", c.node, c.stream, got, c.want)
		}
	}
	ev, err := r.svc.Listening(r.ctx, "b", ab, "127.0.0.1", api.ProbeListening{Port: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if node := early.Apply(ev); node != "a" {
		t.Fatalf("listening makes an order due for %q, want a", node)
	}
	late := NewOrders(r.st, r.clk)
	if err := late.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := r.st.Events(r.ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs { // as the feed brings them again after Load, one at a time
		late.Apply(e)
		early.Apply(e)
		for name, o := range map[string]*Orders{"fed": early, "loaded": late} {
			if got := due(o, "b", fmt.Sprint("s", e.ID)); got != "[]" {
				t.Fatalf("%s, after %s again: b is due %s once it listens", name, e.Type, got)
			}
		}
	}
	for name, o := range map[string]*Orders{"fed": early, "loaded": late} {
		if got := due(o, "a", "s1"); got != connect {
			t.Errorf("%s: a is due %s, want %s", name, got, connect)
		}
	}
	ev, err = r.svc.Report(r.ctx, "a", ab, api.ProbeResult{Error: "refused"})
	if err != nil {
		t.Fatal(err)
	}
	if node := late.Apply(ev); node != "" || due(late, "a", "s2") != "[]" {
		t.Fatalf("a done link: due for %q", node)
	}
	if got := due(early, "a", "s2"); got != connect {
		t.Fatalf("before the done link's event: %s, want %s", got, connect)
	}
	r.clk.Advance(deadline.Sub(r.clk.Now()))
	if got := due(early, "a", "s3"); got != "[]" {
		t.Fatalf("past the deadline: %s", got)
	}
}
