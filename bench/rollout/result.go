package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/client"
)

// followed is what the event log said of the rollout, in the server's times.
type followed struct {
	state    string    // the state it ended in
	end      time.Time // when it got there
	reason   string
	waveDone map[string]time.Time
	nodeDone map[string]time.Time // rollout.node done, by node
	nodes    map[string]int       // rollout.node events by state
	assigned map[string]time.Time // release.deployed naming the node
	assigns  int                  // release.deployed events: the engine's steps that assigned
	first    time.Time            // the first of them
}

// follow follows the event log from the rollout's start until it is no longer running.
func follow(ctx context.Context, c *client.Client, ro api.Rollout, timeout time.Duration) (followed, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f := followed{waveDone: map[string]time.Time{}, nodeDone: map[string]time.Time{}, nodes: map[string]int{}, assigned: map[string]time.Time{}}
	subject := api.RolloutSubject(ro.ID)
	done := errors.New("done")
	err := c.FollowEvents(ctx, ro.LastEvent, func(e api.Event) error {
		switch e.Type {
		case api.EventReleaseDeployed:
			var d api.ReleaseDeployed
			if e.Decode(&d) == nil && d.Rollout == ro.ID {
				if f.assigns == 0 {
					f.first = e.Time
				}
				f.assigns++
				for _, n := range d.Nodes {
					f.assigned[n] = e.Time
				}
			}
		case api.EventRolloutWave:
			var w api.RolloutWaveChanged
			if e.Subject == subject && e.Decode(&w) == nil && w.State == "done" {
				f.waveDone[w.Wave] = e.Time
			}
		case api.EventRolloutNode:
			var n api.RolloutNodeChanged
			if e.Subject == subject && e.Decode(&n) == nil {
				f.nodes[n.State]++
				if n.State == "done" {
					f.nodeDone[n.Node] = e.Time
				}
			}
		case api.EventRolloutState:
			var s api.RolloutStateChanged
			if e.Subject == subject && e.Decode(&s) == nil && s.To != "running" && s.To != "paused" {
				f.state, f.end, f.reason = s.To, e.Time, s.Reason
				return done
			}
		}
		return nil
	})
	if err != done {
		return f, fmt.Errorf("rollout %d did not end within %v (%v): %d nodes done", ro.ID, timeout, err, f.nodes["done"])
	}
	return f, nil
}

// result is one rollout's measurements.
type result struct {
	o        options
	rollout  api.Rollout
	follow   followed
	t0       time.Time // just before the rollout was started
	idleRate float64   // the server's idle CPU, seconds per second
	cpu      float64   // the server's CPU over the rollout, seconds
	self     time.Duration
	load0    string
	load1    string
	lost     int64 // streams that broke and were opened again during the rollout
	// Per node moved: from its running report to the rollout's note that it is done
	// (observe), and from the assignment's event to the agent holding it (push).
	observe, push []time.Duration
}

func (r *result) lags(agents []*vagent) {
	for _, a := range agents {
		a.mu.Lock()
		assigned, reported := a.assigned, a.reported
		a.mu.Unlock()
		if t, ok := r.follow.nodeDone[a.Name]; ok && !reported.IsZero() {
			r.observe = append(r.observe, t.Sub(reported))
		}
		if t, ok := r.follow.assigned[a.Name]; ok && !assigned.IsZero() {
			r.push = append(r.push, assigned.Sub(t))
		}
	}
	slices.Sort(r.observe)
	slices.Sort(r.push)
}

// waveIdeal is the ideal time of a wave (see the package comment).
func (r *result) waveIdeal(w api.RolloutWave) (batches int, ideal time.Duration) {
	p := min(r.o.parallel, w.Nodes)
	online := w.Nodes - w.Unreachable
	batches = (online + p - 1) / p
	ideal = time.Duration(batches) * r.o.install
	if w.Unreachable > 0 {
		ideal = max(ideal, r.o.deadline)
	}
	return batches, ideal + r.o.soak
}

func (r *result) print() {
	f := r.follow
	wall := f.end.Sub(r.t0)
	fmt.Printf("\n== %s\n", header(r.o))
	fmt.Printf("rollout %d ended %s after %v%s; %d nodes done, %d failed, %d unreachable; %d assigning steps\n",
		r.rollout.ID, f.state, wall.Round(time.Millisecond), reason(f.reason), f.nodes["done"], f.nodes["failed"], f.nodes["unreachable"], f.assigns)
	fmt.Printf("the start call's rollout made at +%v, its first assignment at +%v\n",
		r.rollout.CreatedAt.Sub(r.t0).Round(time.Millisecond), f.first.Sub(r.t0).Round(time.Millisecond))
	fmt.Printf("streams that broke and were opened again during the rollout: %d\n", r.lost)
	fmt.Printf("\n| wave | nodes | down | failed | batches | ideal | actual | ratio |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var ideal time.Duration
	prev := r.t0
	for _, w := range r.rollout.Waves {
		b, id := r.waveIdeal(w)
		ideal += id
		actual := "—"
		ratio := "—"
		if t, ok := f.waveDone[w.Name]; ok {
			actual = t.Sub(prev).Round(time.Millisecond).String()
			ratio = fmt.Sprintf("%.3f×", t.Sub(prev).Seconds()/id.Seconds())
			prev = t
		}
		fmt.Printf("| %s | %d | %d | %d | %d | %v | %s | %s |\n", w.Name, w.Nodes, w.Unreachable, w.Failed, b, id, actual, ratio)
	}
	fmt.Printf("| all | | | | | %v | %v | **%.3f×** |\n", ideal, wall.Round(time.Millisecond), wall.Seconds()/ideal.Seconds())
	moved := f.nodes["done"] + f.nodes["failed"]
	own := r.cpu - r.idleRate*wall.Seconds()
	fmt.Printf("\nserver CPU over the rollout: %.2f s (idle with these agents: %.3f s/s, %.2f s over as long) → %.0f µs per node moved in all, %.0f µs beyond idle (%d nodes moved)\n",
		r.cpu, r.idleRate, r.idleRate*wall.Seconds(), r.cpu*1e6/float64(moved), own*1e6/float64(moved), moved)
	fmt.Printf("harness CPU over the rollout: %.2f s; load average (1 min) %s at the start, %s at the end\n", r.self.Seconds(), r.load0, r.load1)
	fmt.Printf("running report → rollout's node done: p50 %v p99 %v max %v (%d nodes)\n", fleet.Percentile(r.observe, 50), fleet.Percentile(r.observe, 99), fleet.Percentile(r.observe, 100), len(r.observe))
	fmt.Printf("assignment event → agent holds it: p50 %v p99 %v max %v (%d nodes)\n", fleet.Percentile(r.push, 50), fleet.Percentile(r.push, 99), fleet.Percentile(r.push, 100), len(r.push))
}

func reason(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
