package store

import (
	"slices"
	"sync"

	"github.com/ferryhq/ferry/api"
)

// tail keeps the newest events of a SQLite log in memory, as committed, so that the change feed's
// followers (the server's own loop, the rollout engine, the webhooks, every `ferry events
// --follow`) read what the last commits wrote without a query each. With a write every few
// milliseconds while a rollout moves, those queries (parsed and run once per follower per
// commit) were a tenth of the server's work. A read from before what the tail holds goes to the
// database.
type tail struct {
	mu    sync.RWMutex
	floor int64       // every event after floor is in evs or was never written
	evs   []api.Event // in id order, contiguous, newest last
}

// tailMax is how many events the tail keeps.
const tailMax = 4096

// start makes the tail begin after the log's last event, id.
func (t *tail) start(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.floor, t.evs = id, nil
}

// add appends the events a transaction committed: in id order, right after those it holds.
// Events out of that order (never, with one writer committing at a time) empty the tail, so
// that reads go to the database until it holds a run again.
func (t *tail) add(evs []api.Event) {
	if len(evs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if evs[0].ID != t.last()+1 {
		t.floor, t.evs = evs[len(evs)-1].ID, nil
		return
	}
	for _, e := range evs {
		if string(e.Data) == "{}" || len(e.Data) == 0 {
			e.Data = nil // as the database gives it back
		}
		t.evs = append(t.evs, e)
	}
	if over := len(t.evs) - tailMax; over > 0 {
		t.floor = t.evs[over-1].ID
		t.evs = slices.Delete(t.evs, 0, over)
	}
}

func (t *tail) last() int64 {
	if len(t.evs) == 0 {
		return t.floor
	}
	return t.evs[len(t.evs)-1].ID
}

// after returns up to limit events after since, and whether the tail could answer: it can when
// it holds every event after since.
func (t *tail) after(since int64, limit int) ([]api.Event, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if since < t.floor {
		return nil, false
	}
	if since >= t.last() || limit <= 0 {
		return nil, true
	}
	from := int(since - t.floor) // evs[i] has id floor+1+i
	to := min(len(t.evs), from+limit)
	return slices.Clone(t.evs[from:to]), true
}
