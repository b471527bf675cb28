package clock

import (
	"testing"
	"time"
)

func TestFakeTimers(t *testing.T) {
	start := time.Unix(0, 0)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	c := f.NewTimer(3 * time.Second)
	if f.Pending() != 3 {
		t.Fatalf("Pending = %d", f.Pending())
	}
	if !c.Stop() || c.Stop() {
		t.Fatal("Stop: want true once, then false")
	}
	f.Advance(1500 * time.Millisecond)
	select {
	case at := <-b.C():
		if !at.Equal(start.Add(time.Second)) {
			t.Fatalf("b fired at %v", at)
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	f.Advance(time.Second)
	<-a.C()
	if a.Stop() {
		t.Fatal("Stop after firing reported true")
	}
	if f.Pending() != 0 || !f.Now().Equal(start.Add(2500*time.Millisecond)) {
		t.Fatalf("Pending %d, Now %v", f.Pending(), f.Now())
	}
	select {
	case <-f.NewTimer(0).C():
	default:
		t.Fatal("zero timer did not fire at once")
	}
}
