// Package clock is the time source that every time-dependent part of Ferry takes, so tests can
// drive deadlines with a fake clock instead of sleeping.
package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of time.Timer that Ferry uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

var _ Clock = Real{}

// Now returns time.Now.
func (Real) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Sleep waits d on c; false if ctx ended first.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	t := c.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-t.C():
		return true
	}
}

// WaitWake waits on c until wake (never, when wake is zero), a send on kick, or the end of
// ctx, whichever comes first: the wait of a loop that works when stirred or when its next
// deadline comes.
func WaitWake(ctx context.Context, c Clock, wake time.Time, kick <-chan struct{}) {
	var due <-chan time.Time
	if !wake.IsZero() {
		t := c.NewTimer(max(wake.Sub(c.Now()), 0))
		defer t.Stop()
		due = t.C()
	}
	select {
	case <-ctx.Done():
	case <-kick:
	case <-due:
	}
}

// Fake is a clock that moves only when Advance is called.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan struct{} // closed and replaced whenever a timer starts waiting
}

var _ Clock = (*Fake)(nil)

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start, added: make(chan struct{})} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake clock passes now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		t.fired = true
		return t
	}
	f.timers = append(f.timers, t)
	close(f.added)
	f.added = make(chan struct{})
	return t
}

// Advance moves the clock forward by d and fires every timer that falls due, in order.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	sort.Slice(f.timers, func(i, j int) bool { return f.timers[i].at.Before(f.timers[j].at) })
	kept := f.timers[:0]
	for _, t := range f.timers {
		if !t.at.After(f.now) {
			t.fired = true
			t.c <- t.at
			continue
		}
		kept = append(kept, t)
	}
	f.timers = kept
}

// Pending reports how many timers wait to fire; tests use it to know a goroutine is parked.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitPending waits until at least n timers wait to fire, or ctx ends: tests use it to know
// that goroutines have parked on the clock.
func (f *Fake) WaitPending(ctx context.Context, n int) error {
	return f.waitFor(ctx, func() bool { return len(f.timers) >= n })
}

// WaitDue waits until a timer that falls due within d of now waits to fire, or ctx ends: tests
// use it to know that one particular short wait has begun.
func (f *Fake) WaitDue(ctx context.Context, d time.Duration) error {
	return f.waitFor(ctx, func() bool {
		for _, t := range f.timers {
			if !t.at.After(f.now.Add(d)) {
				return true
			}
		}
		return false
	})
}

// waitFor waits until cond, called with f.mu held, holds.
func (f *Fake) waitFor(ctx context.Context, cond func() bool) error {
	for {
		f.mu.Lock()
		ok, added := cond(), f.added
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-added:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type fakeTimer struct {
	f     *Fake
	at    time.Time
	c     chan time.Time
	fired bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.fired {
		return false
	}
	for i, o := range t.f.timers {
		if o == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			break
		}
	}
	t.fired = true
	return true
}
