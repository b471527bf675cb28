package server

import (
	"testing"
	"time"
)

// Serve's wait for the streams it ended gives up after a while and names those left; a stream
// ends once, whoever ends it.
func TestLiveStreams(t *testing.T) {
	var l liveStreams
	a, b := &agentStream{node: "a"}, &agentStream{node: "b"}
	l.add(a)
	l.add(b)
	if !l.take(a) {
		t.Fatal("a could not be taken")
	}
	l.release()
	if l.take(a) {
		t.Fatal("a was taken twice")
	}
	if left := l.wait(10 * time.Millisecond); len(left) != 1 || left[0] != b {
		t.Fatalf("left %v, want b", left)
	}
	if !l.take(b) {
		t.Fatal("b could not be taken")
	}
	l.release()
	if left := l.wait(time.Minute); len(left) != 0 {
		t.Fatalf("left %v after every stream ended", left)
	}
}
