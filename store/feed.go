package store

import (
	"context"

	"github.com/ferryhq/ferry/api"
)

// FeedBatch is the most events one Next returns.
const FeedBatch = 10000

// Feed follows the event log, the one change feed everything that reacts to a write learns of
// it from: Next returns the events after the last it returned, in order, waiting when there are
// none. It is built on Events and Changed, so every backend has it; a wake-up that is lost or
// comes late loses nothing, since each read starts from the last event seen.
type Feed struct {
	s     Log
	since int64
}

// Log is what a feed reads: the event log and the wake-up after commits.
type Log interface {
	Events(ctx context.Context, since int64, limit int) ([]api.Event, error)
	Changed() <-chan struct{}
}

// Watch returns a feed of the events after since.
func Watch(s Log, since int64) *Feed { return &Feed{s: s, since: since} }

// Next returns the next events, waiting until there are some or ctx ends.
func (f *Feed) Next(ctx context.Context) ([]api.Event, error) {
	for {
		changed := f.s.Changed() // before the read, so a commit after it is not missed
		evs, err := f.s.Events(ctx, f.since, FeedBatch)
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			f.since = evs[len(evs)-1].ID
			return evs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Since is the id of the last event Next returned (or the feed's start).
func (f *Feed) Since() int64 { return f.since }
