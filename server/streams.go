package server

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// liveStreams counts the agent streams Serve must see ended before it closes the store, and
// knows them, so that a stream whose reader never learns it was ended cannot hold Serve up for
// ever: Serve waits a while, then ends those left itself, and says which they were.
type liveStreams struct {
	mu  sync.Mutex
	set map[*agentStream]struct{}
	wg  sync.WaitGroup
}

// add counts as live.
func (l *liveStreams) add(as *agentStream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = map[*agentStream]struct{}{}
	}
	l.set[as] = struct{}{}
	l.wg.Add(1)
}

// take claims as's ending: true for the first caller only, who calls release once it has.
func (l *liveStreams) take(as *agentStream) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.set[as]; !ok {
		return false
	}
	delete(l.set, as)
	return true
}

// release records that a stream take gave is over.
func (l *liveStreams) release() { l.wg.Done() }

// wait waits until every stream has ended, or d has passed; it returns those left, by node.
func (l *liveStreams) wait(d time.Duration) []*agentStream {
	ended := make(chan struct{})
	go func() { l.wg.Wait(); close(ended) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ended:
		return nil
	case <-t.C:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	left := make([]*agentStream, 0, len(l.set))
	for as := range l.set {
		left = append(left, as)
	}
	slices.SortFunc(left, func(a, b *agentStream) int { return strings.Compare(a.node, b.node) })
	return left
}

// streamsGrace is how long Serve waits for the streams it ended to finish before it finishes
// those left itself.
const streamsGrace = 5 * time.Second
