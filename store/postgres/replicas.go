package postgres

import (
	"context"
	"sort"
	"time"

	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// ReportReplica records a replica's report in one transaction. The nodes it touches are locked
// in byte order of their names, as TouchNodes locks them, so the two never deadlock.
func (s *Store) ReportReplica(ctx context.Context, r store.ReplicaReport) error {
	opened := append([]string(nil), r.Opened...)
	sort.Strings(opened)
	closed := make([]string, 0, len(r.Closed))
	for n := range r.Closed {
		closed = append(closed, n)
	}
	sort.Strings(closed)
	seen := make([]time.Time, len(closed))
	for i, n := range closed {
		seen[i] = pgTime(r.Closed[n])
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO replicas (id, addr, started_at, seen_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, seen_at = excluded.seen_at`,
			r.ID, r.Addr, pgTime(r.Started), pgTime(r.Now)); err != nil {
			return err
		}
		if len(opened) > 0 {
			if _, err := tx.Exec(ctx, `WITH locked AS (
					SELECT name FROM nodes WHERE name = ANY($2) ORDER BY name COLLATE "C" FOR UPDATE)
				UPDATE nodes SET stream_replica = $1 FROM locked WHERE nodes.name = locked.name`, r.ID, opened); err != nil {
				return err
			}
		}
		if len(closed) > 0 {
			if _, err := tx.Exec(ctx, `WITH c AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS c (name, seen)),
				locked AS (SELECT n.name, c.seen FROM nodes n JOIN c ON c.name = n.name
					WHERE n.stream_replica = $1 ORDER BY n.name COLLATE "C" FOR UPDATE OF n)
				UPDATE nodes SET stream_replica = NULL, last_seen = locked.seen FROM locked
				WHERE nodes.name = locked.name AND nodes.stream_replica = $1`, r.ID, closed, seen); err != nil {
				return err
			}
		}
		return nil
	})
}

// StreamHolders says who speaks for each named node.
func (s *Store) StreamHolders(ctx context.Context, names []string) (map[string]store.StreamHolder, error) {
	rows, err := s.pool.Query(ctx, `SELECT n.name, coalesce(n.stream_replica, ''), r.seen_at, n.last_seen
		FROM nodes n LEFT JOIN replicas r ON r.id = n.stream_replica WHERE n.name = ANY($1)`, names)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]store.StreamHolder, len(names))
	for rows.Next() {
		var name string
		var h store.StreamHolder
		var rseen, seen *time.Time
		if err := rows.Scan(&name, &h.Replica, &rseen, &seen); err != nil {
			return nil, err
		}
		if rseen != nil {
			h.ReplicaSeen = rseen.UTC()
		}
		if seen != nil {
			h.LastSeen = seen.UTC()
		}
		out[name] = h
	}
	return out, rows.Err()
}
