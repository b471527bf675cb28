package store

import (
	"context"
	"database/sql"
	"time"
)

// ReplicaReport is what one server process tells the others: that it is alive, and which agent
// streams it took up and gave up since its last report.
type ReplicaReport struct {
	ID, Addr string
	Started  time.Time
	Now      time.Time
	// Opened lists the nodes whose streams it holds now (taking them from any other replica);
	// Closed the nodes whose streams it no longer holds, with when each was last heard from.
	Opened []string
	Closed map[string]time.Time
}

// StreamHolder is who speaks for a node's liveness: the replica holding its stream, if any,
// with when that replica last reported, and when the node was last heard from as far as the
// store knows.
type StreamHolder struct {
	Replica     string
	ReplicaSeen time.Time
	LastSeen    time.Time
}

// ReportReplica records a replica's report.
func (s *SQLite) ReportReplica(ctx context.Context, r ReplicaReport) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO replicas (id, addr, started_at, seen_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, seen_at = excluded.seen_at`, r.ID, r.Addr, ts(r.Started), ts(r.Now)); err != nil {
			return err
		}
		if len(r.Opened) > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE nodes SET stream_replica = ? WHERE name IN (SELECT value FROM json_each(?))`,
				r.ID, mustJSON(r.Opened)); err != nil {
				return err
			}
		}
		if len(r.Closed) > 0 {
			closed := make(map[string]string, len(r.Closed))
			for n, t := range r.Closed {
				closed[n] = ts(t)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE nodes SET stream_replica = NULL, last_seen = c.value
				FROM json_each(?) AS c WHERE nodes.name = c.key AND nodes.stream_replica = ?`, mustJSON(closed), r.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// StreamHolders says who speaks for each named node.
func (s *SQLite) StreamHolders(ctx context.Context, names []string) (map[string]StreamHolder, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT n.name, coalesce(n.stream_replica, ''), coalesce(r.seen_at, ''), coalesce(n.last_seen, '')
		FROM nodes n LEFT JOIN replicas r ON r.id = n.stream_replica
		WHERE n.name IN (SELECT value FROM json_each(?))`, mustJSON(names))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]StreamHolder, len(names))
	for rows.Next() {
		var name, replica, rseen, seen string
		if err := rows.Scan(&name, &replica, &rseen, &seen); err != nil {
			return nil, err
		}
		h := StreamHolder{Replica: replica}
		if rseen != "" {
			h.ReplicaSeen = parseTS(rseen)
		}
		if seen != "" {
			h.LastSeen = parseTS(seen)
		}
		out[name] = h
	}
	return out, rows.Err()
}
