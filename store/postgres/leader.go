package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// leaderCheck is how often a leader makes sure its session, which holds the lead, is alive.
const leaderCheck = 2 * time.Second

// Lead waits until this replica holds the leader lock, a session-level advisory lock on a
// connection of its own: PostgreSQL grants it to one session at a time and hands it to the next
// waiter the moment the holder's session ends, so a leader that dies (its connection closes)
// is replaced at once, without a lease to run out. The returned context ends when ctx does or
// when the session is found gone; the lock goes with the connection.
func (s *Store) Lead(ctx context.Context) (context.Context, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	// Blocks in the server until the lock is granted; ctx cancels the wait.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockLeader); err != nil {
		conn.Release()
		return nil, err
	}
	lead, stop := context.WithCancel(ctx)
	go s.hold(lead, stop, conn)
	return lead, nil
}

// hold keeps the leader's connection until the lead ends, checking that its session lives,
// then closes it, which releases the lock whatever state the session is in.
func (s *Store) hold(lead context.Context, stop context.CancelFunc, conn *pgxpool.Conn) {
	defer func() {
		stop()
		conn.Hijack().Close(context.Background())
	}()
	for {
		t := s.clock.NewTimer(leaderCheck)
		select {
		case <-lead.Done():
			t.Stop()
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(lead, leaderCheck)
		err := conn.Ping(ctx)
		cancel()
		if err != nil {
			s.log.Warn("lost the database session that holds the lead; giving the lead up", "err", err)
			return
		}
	}
}
