package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

const nodeQuery = `SELECT n.name, n.site, s.tier, n.public_key, n.status, n.labels, s.labels, n.facts, n.apps, n.generation,
	n.last_seen, n.enrolled_at FROM nodes n JOIN sites s ON s.name = n.site`

// scanNode reads a node's row; its assignments are the caller's to fill.
func scanNode(row pgx.Row) (api.Node, error) {
	var n api.Node
	if err := row.Scan(&n.Name, &n.Site, &n.Tier, &n.PublicKey, &n.Status, &n.Labels, &n.SiteLabels, &n.Facts, &n.Apps, &n.Generation,
		&n.LastSeen, &n.EnrolledAt); err != nil {
		return n, err
	}
	if n.LastSeen != nil {
		*n.LastSeen = n.LastSeen.UTC()
	}
	n.EnrolledAt = n.EnrolledAt.UTC()
	for i := range n.Apps {
		if t := n.Apps[i].InstalledAt; t != nil {
			*t = t.UTC()
		}
	}
	n.Labels = store.LabelsOrEmpty(n.Labels)
	if n.Apps == nil {
		n.Apps = []api.NodeApp{}
	}
	n.Assigned = []api.Assignment{}
	return n, nil
}

type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}

// assignments reads the assignments of the named nodes (of all when names is nil), by node.
func assignments(ctx context.Context, q querier, names []string) (map[string][]api.Assignment, error) {
	query := `SELECT a.node, a.app, a.version, r.blob, r.size, r.signature, coalesce(r.withdrawn, ''), a.channel, a.stopped, a.restarts, a.rollout, a.attempt, a.min_healthy_ns, a.healthy_deadline_ns
		FROM assignments a JOIN releases r ON r.app = a.app AND r.version = a.version`
	var args []any
	if names != nil {
		query, args = query+` WHERE a.node = ANY($1)`, []any{names}
	}
	rows, err := q.Query(ctx, query+` ORDER BY a.node, a.app`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAssignments(rows)
}

// fillAssigned fills the assignments of nodes in one query.
func fillAssigned(ctx context.Context, q querier, nodes []api.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	all, err := assignments(ctx, q, names)
	if err != nil {
		return err
	}
	for i := range nodes {
		if a := all[nodes[i].Name]; a != nil {
			nodes[i].Assigned = a
		}
	}
	return nil
}

// Nodes lists every node by name, revoked ones included.
func (s *Store) Nodes(ctx context.Context) ([]api.Node, error) {
	rows, err := s.pool.Query(ctx, nodeQuery+` ORDER BY n.name`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Node, error) { return scanNode(r) })
	if err != nil {
		return nil, err
	}
	all, err := assignments(ctx, s.pool, nil)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if a := all[out[i].Name]; a != nil {
			out[i].Assigned = a
		}
	}
	return out, nil
}

// Node returns one node.
func (s *Store) Node(ctx context.Context, name string) (api.Node, error) {
	n, err := scanNode(s.pool.QueryRow(ctx, nodeQuery+` WHERE n.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return n, fmt.Errorf("node %q %w", name, store.ErrNotFound)
	}
	if err != nil {
		return n, err
	}
	nodes := []api.Node{n}
	err = fillAssigned(ctx, s.pool, nodes)
	return nodes[0], err
}

// NodesNamed reads the named nodes that exist, with their assignments.
func (s *Store) NodesNamed(ctx context.Context, names []string) (map[string]api.Node, error) {
	if len(names) == 0 {
		return map[string]api.Node{}, nil
	}
	rows, err := s.pool.Query(ctx, nodeQuery+` WHERE n.name = ANY($1)`, names)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Node, error) { return scanNode(r) })
	if err != nil {
		return nil, err
	}
	if err := fillAssigned(ctx, s.pool, found); err != nil {
		return nil, err
	}
	out := make(map[string]api.Node, len(found))
	for _, n := range found {
		out[n.Name] = n
	}
	return out, nil
}

// NodeStates reads the status and app report of the named nodes (of all when names is nil).
func (s *Store) NodeStates(ctx context.Context, names []string) (map[string]store.NodeState, error) {
	query, args := `SELECT name, status, apps FROM nodes`, []any{}
	if names != nil {
		query, args = query+` WHERE name = ANY($1)`, []any{names}
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.NodeState{}
	for rows.Next() {
		var name string
		var st store.NodeState
		if err := rows.Scan(&name, &st.Status, &st.Apps); err != nil {
			return nil, err
		}
		for i := range st.Apps {
			if t := st.Apps[i].InstalledAt; t != nil {
				*t = t.UTC()
			}
		}
		out[name] = st
	}
	return out, rows.Err()
}

// SetFacts replaces a node's facts.
func (s *Store) SetFacts(ctx context.Context, name string, f api.Facts) error {
	tag, err := s.pool.Exec(ctx, `UPDATE nodes SET facts = $1 WHERE name = $2`, f, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("node %q %w", name, store.ErrNotFound)
	}
	return nil
}

// TouchNodes records last-seen times in one transaction and one round trip. Rows are updated
// in name order, so two replicas touching the same nodes lock them in the same order.
func (s *Store) TouchNodes(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	var batch pgx.Batch
	for _, name := range names {
		batch.Queue(`UPDATE nodes SET last_seen = $1 WHERE name = $2`, pgTime(seen[name]), name)
	}
	return s.tx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &batch).Close() })
}

// AppCounts counts the nodes that are not revoked by each app, version and state they report.
func (s *Store) AppCounts(ctx context.Context) ([]store.AppCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT a->>'app', coalesce(a->>'version', ''), coalesce(a->>'state', ''), count(*)
		FROM nodes n, jsonb_array_elements(n.apps) a WHERE n.status != 'revoked' GROUP BY 1, 2, 3`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AppCount, error) {
		var c store.AppCount
		return c, row.Scan(&c.App, &c.Version, &c.State, &c.Nodes)
	})
}
