package supervise

import (
	"context"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// Changes come in order; a subscriber that does not read keeps only the newest maxQueued and
// never holds up the publisher; cancel closes the channel.
func TestFeed(t *testing.T) {
	var f feed
	ch, cancel := f.subscribe()
	for i := range maxQueued + 10 {
		f.publish(Status{Restarts: i})
	}
	// The forwarder may already hold the first change when the queue overflows.
	want := 10
	if first := <-ch; first.Restarts != 0 {
		want = 11
		if first.Restarts != 10 {
			t.Fatalf("first change %d, want 0 or 10", first.Restarts)
		}
	}
	for ; want < maxQueued+10; want++ {
		if st := <-ch; st.Restarts != want {
			t.Fatalf("got change %d, want %d", st.Restarts, want)
		}
	}
	cancel()
	cancel()
	for range ch {
	}
	f.publish(Status{}) // no subscriber left: nothing to do
	if len(f.subs) != 0 {
		t.Fatalf("%d subscribers after cancel", len(f.subs))
	}
}

// Close leaves the processes running and refuses further starts.
func TestCloseLeavesProcessesRunning(t *testing.T) {
	s := open(t, newDirs(t), clock.NewFake(time.Unix(1e9, 0)))
	st := start(t, s, sleeper("web"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !alive(st.Pid) {
		t.Fatal("Close stopped the process")
	}
	if err := s.Start(context.Background(), sleeper("other")); err == nil {
		t.Fatal("Start after Close worked")
	}
	if err := s.Stop(context.Background(), "web"); err == nil {
		t.Fatal("Stop after Close worked")
	}
}
