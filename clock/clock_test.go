package clock

import (
	"context"
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

// WaitPending returns once enough timers wait, and gives up when its context ends.
func TestFakeWaitPending(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitPending(ctx, 1); err == nil {
		t.Fatal("WaitPending returned with no timer and its context ended")
	}
	done := make(chan error, 1)
	go func() { done <- f.WaitPending(context.Background(), 2) }()
	f.NewTimer(time.Second)
	f.NewTimer(time.Minute)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.WaitPending(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := f.WaitDue(short, 500*time.Millisecond); err == nil {
		t.Fatal("WaitDue returned with no timer due that soon")
	}
	go func() { done <- f.WaitDue(context.Background(), 500*time.Millisecond) }()
	f.NewTimer(400 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
