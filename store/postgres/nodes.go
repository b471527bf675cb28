package postgres

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// EnrollNode spends an enrollment token and records the node.
func (s *Store) EnrollNode(ctx context.Context, tokenID, secretHash string, n store.NodeRecord, now time.Time) (api.Node, api.Event, error) {
	var ev api.Event
	err := s.write(ctx, func(tx writeTx) error {
		t, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = $1`, tokenID))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("enrollment token unknown or revoked: %w", store.ErrTokenInvalid)
		case err != nil:
			return err
		case subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(secretHash)) != 1 || t.Kind != store.KindEnroll:
			return fmt.Errorf("enrollment token unknown or revoked: %w", store.ErrTokenInvalid)
		case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
			return fmt.Errorf("enrollment token expired at %s; create a new one: %w", t.ExpiresAt.Format(time.RFC3339), store.ErrTokenInvalid)
		case t.UsesLeft != nil && *t.UsesLeft <= 0:
			return fmt.Errorf("enrollment token is used up; create a new one: %w", store.ErrTokenInvalid)
		}
		var status string
		err = tx.QueryRow(ctx, `SELECT status FROM nodes WHERE name = $1`, n.Name).Scan(&status)
		switch {
		case err == nil && status != api.StatusRevoked:
			return fmt.Errorf("node name %q is taken by an enrolled node; pick another --name or remove it first: %w", n.Name, store.ErrExists)
		case err == nil:
			if _, err := tx.Exec(ctx, `DELETE FROM nodes WHERE name = $1`, n.Name); err != nil {
				return err
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var dup bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM nodes WHERE public_key = $1)`, n.PublicKey).Scan(&dup); err != nil {
			return err
		}
		if dup {
			return fmt.Errorf("this public key is already enrolled: %w", store.ErrExists)
		}
		if t.UsesLeft != nil {
			if _, err := tx.Exec(ctx, `UPDATE tokens SET uses_left = uses_left - 1 WHERE id = $1`, t.ID); err != nil {
				return err
			}
		}
		lbl := n.Labels
		if lbl == nil {
			lbl = map[string]string{}
		}
		at := pgTime(now)
		if _, err = tx.Exec(ctx, `INSERT INTO nodes (name, site, public_key, status, labels, facts, generation, last_seen, enrolled_at)
			VALUES ($1, $2, $3, 'up', $4, $5, 1, $6, $6)`, n.Name, t.Site, n.PublicKey, lbl, n.Facts, at); err != nil {
			return err
		}
		ev, err = tx.appendEvent(ctx, api.NewEvent(now, api.EventNodeEnrolled, n.Name, api.NodeEnrolled{Site: t.Site, Token: t.ID}))
		return err
	})
	if err != nil {
		return api.Node{}, ev, err
	}
	node, err := s.Node(ctx, n.Name)
	return node, ev, err
}

const nodeQuery = `SELECT n.name, n.site, s.tier, n.public_key, n.status, n.labels, n.facts, n.apps, n.generation,
	n.last_seen, n.enrolled_at FROM nodes n JOIN sites s ON s.name = n.site`

// scanNode reads a node's row; its assignments are the caller's to fill.
func scanNode(row pgx.Row) (api.Node, error) {
	var n api.Node
	if err := row.Scan(&n.Name, &n.Site, &n.Tier, &n.PublicKey, &n.Status, &n.Labels, &n.Facts, &n.Apps, &n.Generation,
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
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
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
	query := `SELECT a.node, a.app, a.version, r.blob, r.size, r.signature, coalesce(r.withdrawn, '')
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

// SetNodeStatus moves a node between up and down.
func (s *Store) SetNodeStatus(ctx context.Context, name, status string, now time.Time) (api.Event, bool, error) {
	var ev api.Event
	changed := false
	err := s.write(ctx, func(tx writeTx) error {
		var cur string
		err := tx.QueryRow(ctx, `SELECT status FROM nodes WHERE name = $1`, name).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("node %q %w", name, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if cur == status || cur == api.StatusRevoked {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE nodes SET status = $1 WHERE name = $2`, status, name); err != nil {
			return err
		}
		changed = true
		typ := api.EventNodeUp
		if status == api.StatusDown {
			typ = api.EventNodeDown
		}
		ev, err = tx.appendEvent(ctx, api.NewEvent(now, typ, name, api.NodeStatusChanged{From: cur}))
		return err
	})
	return ev, changed, err
}

// RevokeNode revokes a node's identity at once.
func (s *Store) RevokeNode(ctx context.Context, name string, now time.Time) (api.Event, error) {
	var ev api.Event
	err := s.write(ctx, func(tx writeTx) error {
		tag, err := tx.Exec(ctx, `UPDATE nodes SET status = 'revoked' WHERE name = $1 AND status != 'revoked'`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("node %q %w", name, store.ErrNotFound)
		}
		ev, err = tx.appendEvent(ctx, api.NewEvent(now, api.EventNodeRevoked, name, nil))
		return err
	})
	return ev, err
}

// ChangeLabels applies a label change to named nodes: one query reads them, one round trip
// writes the changed ones and their events.
func (s *Store) ChangeLabels(ctx context.Context, names []string, set map[string]string, remove []string, now time.Time) ([]api.Node, []api.Event, error) {
	var evs []api.Event
	var changed []api.Node
	err := s.write(ctx, func(tx writeTx) error {
		rows, err := tx.Query(ctx, nodeQuery+` WHERE n.name = ANY($1)`, names)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Node, error) { return scanNode(r) })
		if err != nil {
			return err
		}
		byName := make(map[string]*api.Node, len(found))
		for i := range found {
			byName[found[i].Name] = &found[i]
		}
		var batch pgx.Batch
		for _, name := range names {
			n := byName[name]
			if n == nil || n.Status == api.StatusRevoked {
				return fmt.Errorf("node %q %w", name, store.ErrNotFound)
			}
			m := maps.Clone(n.Labels)
			maps.Copy(m, set)
			for _, k := range remove {
				delete(m, k)
			}
			// Checked here, on the merged set inside the transaction, so concurrent changes
			// cannot together pass the bound; a node already over it may still shrink.
			if len(m) > labels.MaxLabels && len(m) > len(n.Labels) {
				return fmt.Errorf("node %s would carry %d labels; at most %d: %w", name, len(m), labels.MaxLabels, store.ErrConflict)
			}
			if maps.Equal(m, n.Labels) {
				continue
			}
			n.Labels = m
			n.Generation++
			ev := withActor(ctx, api.NewEvent(pgTime(now), api.EventNodeLabeled, name, api.NodeLabeled{Labels: m, Generation: n.Generation}))
			batch.Queue(`UPDATE nodes SET labels = $1, generation = $2 WHERE name = $3`, m, n.Generation, name)
			batch.Queue(insertEvent, eventArgs(ev)...)
			evs = append(evs, ev)
			changed = append(changed, *n)
		}
		if len(evs) == 0 {
			return nil
		}
		res := tx.SendBatch(ctx, &batch)
		for i := range evs {
			if _, err := res.Exec(); err != nil {
				res.Close()
				return err
			}
			if err := res.QueryRow().Scan(&evs[i].ID); err != nil {
				res.Close()
				return err
			}
		}
		if err := res.Close(); err != nil {
			return err
		}
		return fillAssigned(ctx, tx, changed)
	})
	if err != nil {
		return nil, nil, err
	}
	return changed, evs, nil
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
