package liveness

import (
	"reflect"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

func TestGrace(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := New(30 * time.Second)
	d.Track("a", false, clk.Now())
	d.Track("b", false, clk.Now())

	clk.Advance(10 * time.Second)
	d.Heartbeat("a", clk.Now())
	clk.Advance(19 * time.Second) // b silent 29s: still up
	if got := d.Sweep(clk.Now()); len(got) != 0 {
		t.Fatalf("swept %v before grace", got)
	}
	if dl := d.NextDeadline(); !dl.Equal(clk.Now().Add(time.Second)) {
		t.Fatalf("NextDeadline = %v, want b's deadline one second on", dl)
	}
	clk.Advance(time.Second) // b silent 30s
	if got := d.Sweep(clk.Now()); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("Sweep = %v, want [b]", got)
	}
	if got := d.Sweep(clk.Now().Add(time.Hour)); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("later Sweep = %v, want only a (b already down)", got)
	}
	if back, known := d.Heartbeat("b", clk.Now()); !back || !known {
		t.Fatalf("Heartbeat(b) after down = %v %v, want came back", back, known)
	}
	if back, _ := d.Heartbeat("b", clk.Now()); back {
		t.Fatal("second heartbeat reported a return again")
	}
	if got := d.Sweep(clk.Now().Add(2 * time.Hour)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("after its return b is up again and can fall silent: Sweep = %v", got)
	}
}

func TestHeartbeatUnknownAndForget(t *testing.T) {
	now := time.Unix(1000, 0)
	d := New(time.Second)
	if _, known := d.Heartbeat("ghost", now); known {
		t.Fatal("unknown node reported known")
	}
	d.Track("a", false, now)
	d.Heartbeat("a", now.Add(time.Millisecond))
	d.Forget("a")
	if got := d.Sweep(now.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("forgotten node swept: %v", got)
	}
	if seen := d.TakeSeen(); len(seen) != 0 {
		t.Fatalf("forgotten node still dirty: %v", seen)
	}
}

func TestTakeSeenBatches(t *testing.T) {
	now := time.Unix(1000, 0)
	d := New(time.Minute)
	d.Track("a", false, now)
	d.Track("b", true, now)
	d.Heartbeat("a", now.Add(time.Second))
	d.Heartbeat("a", now.Add(2*time.Second))
	d.Heartbeat("b", now.Add(time.Second))
	seen := d.TakeSeen()
	if len(seen) != 2 || !seen["a"].Equal(now.Add(2*time.Second)) {
		t.Fatalf("TakeSeen = %v", seen)
	}
	if again := d.TakeSeen(); len(again) != 0 {
		t.Fatalf("second TakeSeen = %v, want empty", again)
	}
	// A heartbeat that arrives out of order never moves last-seen backwards.
	d.Heartbeat("a", now)
	if got := d.TakeSeen()["a"]; !got.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("last seen went backwards to %v", got)
	}
}

// Down says what the detector holds now: up after a heartbeat, down once swept, unknown when
// the node is not tracked.
func TestDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := New(time.Minute)
	if _, known := d.Down("n1"); known {
		t.Fatal("an untracked node is known")
	}
	d.Track("n1", false, t0)
	if down, known := d.Down("n1"); down || !known {
		t.Fatalf("tracked up: down=%v known=%v", down, known)
	}
	d.Sweep(t0.Add(2 * time.Minute))
	if down, _ := d.Down("n1"); !down {
		t.Fatal("swept node is not down")
	}
	d.Heartbeat("n1", t0.Add(3*time.Minute))
	if down, _ := d.Down("n1"); down {
		t.Fatal("a node that spoke again is down")
	}
}

// What other replicas say moves the detector: a node marked down elsewhere comes back with its
// next heartbeat here; one vouched for is up, and silent only a grace after the vouch.
func TestVouchAndSetDown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := New(30 * time.Second)
	d.Track("a", false, t0)
	d.Track("b", false, t0)
	d.Track("c", true, t0)
	d.SetDown("a", t0.Add(time.Second))
	if down, _ := d.Down("a"); !down {
		t.Fatal("a not down after SetDown")
	}
	if back, _ := d.Heartbeat("a", t0.Add(20*time.Second)); !back {
		t.Fatal("a's heartbeat after SetDown did not report its return")
	}
	// A node heard at or after it was judged down is back: the late word leaves it up.
	d.SetDown("a", t0.Add(20*time.Second))
	d.Heartbeat("b", t0.Add(10*time.Second))
	d.SetDown("b", t0.Add(5*time.Second))
	for _, n := range []string{"a", "b"} {
		if down, _ := d.Down(n); down {
			t.Fatalf("%s, heard at or after it was judged down, is down", n)
		}
	}
	d.Vouch("b", t0.Add(20*time.Second))
	if got := d.Sweep(t0.Add(40 * time.Second)); len(got) != 0 {
		t.Fatalf("swept %v within the grace of a vouch", got)
	}
	d.Vouch("b", t0) // an older vouch does not move the node back in time
	if got := d.Sweep(t0.Add(49 * time.Second)); len(got) != 0 {
		t.Fatalf("swept %v after an older vouch", got)
	}
	if down, _ := d.Down("c"); !down {
		t.Fatal("c came up by itself")
	}
	d.Vouch("c", t0.Add(130*time.Second))
	if down, _ := d.Down("c"); down {
		t.Fatal("vouched node still down")
	}
	d.SetDown("ghost", t0)
	d.Vouch("ghost", t0)
	if _, known := d.Down("ghost"); known {
		t.Fatal("SetDown or Vouch started tracking an unknown node")
	}
}

// HeartbeatUp records a heartbeat of a node held up, as Heartbeat does, and leaves a node held
// down, or one not tracked, untouched for Heartbeat to record its return.
func TestHeartbeatUp(t *testing.T) {
	now := time.Unix(1000, 0)
	d := New(30 * time.Second)
	d.Track("a", false, now)
	d.Track("b", true, now)
	if !d.HeartbeatUp("a", now.Add(20*time.Second)) {
		t.Fatal("HeartbeatUp refused a node held up")
	}
	if got := d.Sweep(now.Add(40 * time.Second)); len(got) != 0 {
		t.Fatalf("a heard 20 s ago was swept: %v", got)
	}
	if seen := d.TakeSeen(); !seen["a"].Equal(now.Add(20 * time.Second)) {
		t.Fatalf("HeartbeatUp left a's last-seen time unflushed: %v", seen)
	}
	if d.HeartbeatUp("b", now.Add(time.Second)) || d.HeartbeatUp("ghost", now) {
		t.Fatal("HeartbeatUp took a node held down, or one not tracked")
	}
	if back, _ := d.Heartbeat("b", now.Add(time.Second)); !back {
		t.Fatal("after HeartbeatUp refused it, b's heartbeat no longer reports its return")
	}
	if seen := d.TakeSeen(); len(seen) != 1 {
		t.Fatalf("refused HeartbeatUps left last-seen times: %v", seen)
	}
}
