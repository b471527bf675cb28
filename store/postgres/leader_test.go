package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// One replica leads at a time. Another waits, and takes the lead the moment the leader gives it
// up or its session dies; a leader whose session died finds out and stops leading.
func TestLeaderHandover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := pg.DB(t)
	clkA, clkB := clock.NewFake(time.Now()), clock.NewFake(time.Now())
	a, b, c := open(t, url, WithClock(clkA)), open(t, url, WithClock(clkB)), open(t, url)
	held := func() bool {
		t.Helper()
		var got bool
		if err := c.pool.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockLeader).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got {
			c.pool.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
		}
		return !got
	}
	if held() {
		t.Fatal("the lead is held before anyone asked for it")
	}

	giveUp, stopA := context.WithCancel(ctx)
	leadA, err := a.Lead(giveUp)
	if err != nil {
		t.Fatal(err)
	}
	if !held() {
		t.Fatal("the leader does not hold the lock")
	}
	type lead struct {
		ctx context.Context
		err error
	}
	got := make(chan lead, 1)
	go func() { l, err := b.Lead(ctx); got <- lead{l, err} }()

	// A gives the lead up: B takes it.
	stopA()
	<-leadA.Done()
	l := <-got
	if l.err != nil {
		t.Fatal(l.err)
	}

	// B's session dies: A, asking again, takes the lead; B notices at its next check.
	again := make(chan lead, 1)
	go func() { l, err := a.Lead(ctx); again <- lead{l, err} }()
	var pid int
	if err := c.pool.QueryRow(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = $1::bigint & 4294967295`, lockLeader).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if la := <-again; la.err != nil || la.ctx.Err() != nil {
		t.Fatalf("A after B's session died: %v", la.err)
	}
	if err := clkB.WaitPending(ctx, 2); err != nil { // the listener's check and the lead's
		t.Fatal(err)
	}
	clkB.Advance(leaderCheck) // B's check finds its session gone
	select {
	case <-l.ctx.Done():
	case <-ctx.Done():
		t.Fatal("B still leads after its session died")
	}
}
