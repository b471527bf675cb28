package supervise

import "sync"

// maxQueued bounds the changes a subscriber may fall behind by; past it the oldest are dropped
// (Status and List always tell the present).
const maxQueued = 4096

// feed hands every change to each subscriber in order, without ever making the supervisor
// wait for a slow one.
type feed struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	mu    sync.Mutex
	queue []Status
	wake  chan struct{} // holds a token when queue may have grown
	done  chan struct{} // closed by cancel
	out   chan Status
}

// publish queues st for every subscriber.
func (f *feed) publish(st Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.mu.Lock()
		if len(s.queue) >= maxQueued {
			s.queue = s.queue[1:]
		}
		s.queue = append(s.queue, st)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// subscribe starts a subscriber; cancel stops it and closes its channel.
func (f *feed) subscribe() (<-chan Status, func()) {
	s := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{}), out: make(chan Status)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[*subscriber]struct{}{}
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	go s.forward()
	var once sync.Once
	return s.out, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
			close(s.done)
		})
	}
}

// forward moves queued changes to out until cancelled.
func (s *subscriber) forward() {
	defer close(s.out)
	for {
		s.mu.Lock()
		var next Status
		ok := len(s.queue) > 0
		if ok {
			next, s.queue = s.queue[0], s.queue[1:]
		}
		s.mu.Unlock()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		select {
		case s.out <- next:
		case <-s.done:
			return
		}
	}
}
