package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

const insertEvent = `INSERT INTO events (time, type, subject, data, actor, role, source)
	VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`

// appendEvent writes e, with the actor of ctx, and returns it as stored. It takes a writeTx:
// events are written under the events lock only.
func (tx writeTx) appendEvent(ctx context.Context, e api.Event) (api.Event, error) {
	e = withActor(ctx, e)
	e.Time = pgTime(e.Time)
	err := tx.QueryRow(ctx, insertEvent, eventArgs(e)...).Scan(&e.ID)
	return e, err
}

// eventArgs returns the arguments of insertEvent for e.
func eventArgs(e api.Event) []any {
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return []any{e.Time, e.Type, e.Subject, data, e.Actor, e.Role, e.Source}
}

// Events reads the log after since, oldest first. Ids are assigned in commit order (see the
// package doc), so a later read never finds an id below one an earlier read returned.
func (s *Store) Events(ctx context.Context, since int64, limit int) ([]api.Event, error) {
	return s.queryEvents(ctx, `SELECT id, time, type, subject, data, actor, role, source
		FROM events WHERE id > $1 ORDER BY id LIMIT $2`, since, limit)
}

// SubjectEvents reads the newest events about subject, through events_subject.
func (s *Store) SubjectEvents(ctx context.Context, subject string, limit int) ([]api.Event, error) {
	return s.queryEvents(ctx, `SELECT id, time, type, subject, data, actor, role, source
		FROM events WHERE subject = $1 ORDER BY id DESC LIMIT $2`, subject, limit)
}

// queryEvents runs a query of the events' columns and returns the events.
func (s *Store) queryEvents(ctx context.Context, query string, args ...any) ([]api.Event, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Event
	for rows.Next() {
		var e api.Event
		var data string
		if err := rows.Scan(&e.ID, &e.Time, &e.Type, &e.Subject, &data, &e.Actor, &e.Role, &e.Source); err != nil {
			return nil, err
		}
		e.Time = e.Time.UTC()
		if data != "{}" {
			e.Data = json.RawMessage(data)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// LastEventID returns the id of the newest event, 0 when there is none.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM events`).Scan(&id)
	return id, err
}

// SpendNonce records a nonce as spent until expires; false when it already is. Each call also
// deletes up to store.MaxPurgedNonces records that expired before now, oldest first, skipping
// those another spender is deleting at the same time.
func (s *Store) SpendNonce(ctx context.Context, nonce string, expires, now time.Time) (bool, error) {
	if nonce == "" || len(nonce) > store.MaxNonceLen {
		return false, fmt.Errorf("nonce of %d bytes: want 1 to %d", len(nonce), store.MaxNonceLen)
	}
	spent := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM spent_nonces WHERE nonce IN (SELECT nonce FROM spent_nonces
			WHERE expires_at < $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, now.UnixNano(), store.MaxPurgedNonces); err != nil {
			return err
		}
		// A record that expired but was not purged yet no longer counts. Of concurrent
		// spenders, the first to insert wins; the others wait for it, then find it spent.
		tag, err := tx.Exec(ctx, `INSERT INTO spent_nonces (nonce, expires_at) VALUES ($1, $2)
			ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE spent_nonces.expires_at < $3`,
			nonce, expires.UnixNano(), now.UnixNano())
		spent = tag.RowsAffected() == 1
		return err
	})
	return spent, err
}
