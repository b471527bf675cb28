// Package postgres is the PostgreSQL backend of the store, for several server replicas over one
// database. Part of store.Store is done: the event log and its change feed, spent nonces,
// sites, tokens, nodes, and the reads of keys, releases and channels. Their writes, and
// assignments and app reports, are Update's (store.Updater): the services make them from the
// primitives of store.Tx. Nothing opens this backend for a server yet.
//
// Event ids follow commit order. Every transaction that writes events first takes one
// transaction-scoped advisory lock (the events lock), so an event-writing transaction gets its
// ids only after the one before it has committed and become visible: whatever a reader sees of
// the log is a prefix of it, and a follower reading "id > the last I saw" never skips an event
// that commits later with a smaller id, as it could with concurrent writers otherwise. The lock
// is taken before any row is touched, so it cannot deadlock with row locks; the cost is that
// event-writing transactions run one at a time across all replicas, as every write does on
// SQLite. Writes that record no event (last-seen times, facts, nonces) do not take it.
//
// Changed is driven by LISTEN/NOTIFY: each event-writing transaction notifies at commit, and a
// connection of each replica's own listens. A notification lost while that connection is down
// loses nothing: each time it is connected again Changed fires, and followers catch up by id. A
// listening connection quiet for listenCheck is pinged, so one that died without a word (a host
// or link gone) is found and replaced too.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Advisory lock keys, in the one 64-bit space that PostgreSQL's advisory locks share with
// anything else using the database: "ferry" in ASCII, then a number.
const (
	lockMigrate int64 = 0x66657272790001 // held while the schema is checked and migrated
	lockEvents  int64 = 0x66657272790002 // held by every transaction that writes events
	lockLeader  int64 = 0x66657272790003 // held by the leading replica's session
)

// notifyChannel is the channel of LISTEN/NOTIFY on which writes announce their commits.
const notifyChannel = "ferry_changes"

// listenCheck is how long the listening connection may be quiet before it is pinged.
const listenCheck = 30 * time.Second

// Waits between attempts to listen again after the listening connection failed.
const (
	minListenBackoff = 100 * time.Millisecond
	maxListenBackoff = 5 * time.Second
)

// Store is the PostgreSQL store of one replica; several may share a database.
type Store struct {
	pool    *pgxpool.Pool
	changes store.Broadcast // fired after a commit, here or on any replica
	log     *slog.Logger
	clock   clock.Clock
	// dial opens the listening connection.
	dial func(ctx context.Context) (*pgx.Conn, error)

	stopListening context.CancelFunc
	listening     chan struct{} // closed when the listener has stopped
}

// Option changes how Open sets up a Store.
type Option func(*Store)

// WithLogger sets where the store logs trouble with its listening connection.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithClock sets the clock of the listener's waits between reconnections.
func WithClock(c clock.Clock) Option { return func(s *Store) { s.clock = c } }

// Open connects to the database at url (postgres://… or key=value), applies pending migrations
// and starts listening for commits. A database written by a newer Ferry is refused.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "ferry"
	}
	listenCfg := cfg.ConnConfig.Copy()
	listenCfg.RuntimeParams["application_name"] += " listener"
	s := &Store{
		log:   slog.New(slog.DiscardHandler),
		clock: clock.Real{},
		dial:  func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, listenCfg) },
	}
	for _, o := range opts {
		o(s)
	}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	conn, err := s.subscribe(ctx)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("listen for changes: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListening, s.listening = cancel, make(chan struct{})
	go s.listen(lctx, conn)
	return s, nil
}

// Close stops listening and closes the database connections.
func (s *Store) Close() error {
	s.stopListening()
	<-s.listening
	s.pool.Close()
	return nil
}

// migrations returns the embedded migration scripts in order; script N takes the schema to N.
func migrations() ([]string, error) { return store.ReadMigrations(migrationFS, "migrations") }

// SchemaVersion is the newest PostgreSQL schema this build knows.
func SchemaVersion() int {
	m, _ := migrations()
	return len(m)
}

// migrate brings the schema to the newest version in one transaction, under a lock, so
// replicas that start together migrate once.
func (s *Store) migrate(ctx context.Context) error {
	scripts, err := migrations()
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockMigrate); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('meta') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	have := 0
	if exists {
		var v string
		if err := tx.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if have, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("bad schema version %q in database", v)
		}
	}
	if err := store.CheckSchemaVersion(have, len(scripts)); err != nil {
		return err
	}
	if have == len(scripts) {
		return nil
	}
	for v := have; v < len(scripts); v++ {
		if _, err := tx.Exec(ctx, scripts[v]); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.Itoa(len(scripts))); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// writeTx is a transaction that holds the events lock: the only kind appendEvent takes.
type writeTx struct{ pgx.Tx }

// write runs fn in a transaction that holds the events lock, commits it, and wakes the
// followers of every replica.
func (s *Store) write(ctx context.Context, fn func(tx writeTx) error) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// The notification is sent at commit only, and not at all on rollback.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1), pg_notify($2, '')`, lockEvents, notifyChannel); err != nil {
			return err
		}
		return fn(writeTx{tx})
	})
	if err == nil {
		s.changes.Fire() // at once for this replica's own followers, before the notification
	}
	return err
}

// tx runs fn in a transaction and commits it. Writes of events go through write.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Changed returns a channel closed at the next commit on any replica.
func (s *Store) Changed() <-chan struct{} { return s.changes.Wait() }

// subscribe opens a connection that listens for commits.
func (s *Store) subscribe(ctx context.Context) (*pgx.Conn, error) {
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listen turns notifications into wake-ups until ctx ends, connecting again whenever the
// listening connection fails. Each time it starts listening it fires Changed, so followers
// read whatever committed while nobody listened.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	defer close(s.listening)
	backoff := minListenBackoff
	for {
		if conn != nil {
			backoff = minListenBackoff
			s.changes.Fire()
			var err error
			for err == nil {
				var n *pgconn.Notification
				switch n, err = s.waitNotification(ctx, conn); {
				case err != nil:
				case n != nil:
					s.changes.Fire()
				default:
					// Quiet for a while: a connection that died without a word (a host or a link
					// gone, no FIN) fails the ping, and is replaced.
					pctx, cancel := s.timeout(ctx, listenCheck)
					err = conn.Ping(pctx)
					cancel()
				}
			}
			conn.Close(context.Background())
			conn = nil
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("listening for changes stopped; listening again", "err", err)
		}
		var err error
		if conn, err = s.subscribe(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("cannot listen for changes", "err", err, "retry_in", backoff)
			if !clock.Sleep(ctx, s.clock, backoff) {
				return
			}
			backoff = min(2*backoff, maxListenBackoff)
		}
	}
}

// waitNotification waits for the next notification on conn, or for listenCheck on the store's
// clock, when it returns neither a notification nor an error.
func (s *Store) waitNotification(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	wctx, cancel := s.timeout(ctx, listenCheck)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil && ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded) {
		return nil, nil
	}
	return n, err
}

// timeout is context.WithTimeout on the store's clock.
func (s *Store) timeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	tctx, cancel := context.WithCancelCause(ctx)
	t := s.clock.NewTimer(d)
	go func() {
		select {
		case <-t.C():
			cancel(context.DeadlineExceeded)
		case <-tctx.Done():
			t.Stop()
		}
	}()
	return &causeContext{tctx}, func() { cancel(context.Canceled) }
}

// causeContext reports its cause as its error, so a timeout reads as context.DeadlineExceeded.
type causeContext struct{ context.Context }

func (c *causeContext) Err() error {
	if c.Context.Err() == nil {
		return nil
	}
	return context.Cause(c.Context)
}

// pgTime is t as PostgreSQL keeps it: in UTC, to the microsecond. Times are cut to that before
// they are written, so what a write returns is what a read finds.
func pgTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// pgTimePtr is pgTime of an optional time.
func pgTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := pgTime(*t)
	return &v
}

// withActor sets e's actor to the one ctx carries (System when none), replacing whatever e held:
// the actor of an event is always that of the request that wrote it.
func withActor(ctx context.Context, e api.Event) api.Event {
	a := store.ActorFrom(ctx)
	e.Actor, e.Role, e.Source = a.ID, a.Role, a.Source
	return e
}

// Unavailable reports whether err says the database could not be reached (or the connection to
// it broke before anything was done): the request may be tried again once it is back.
func Unavailable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.SafeToRetry(err)
}
