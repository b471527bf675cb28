package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Rollouts in SQLite: one row each, the plan and progress as JSON text, and a row for each
// node's progress in rollout_nodes.

const rolloutCols = `id, app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at, rev`

type scanner interface{ Scan(dest ...any) error }

func scanRollout(row scanner) (RolloutRecord, error) {
	var r RolloutRecord
	var plan, progress, created, updated string
	var wake sql.NullString
	if err := row.Scan(&r.ID, &r.App, &r.Version, &r.Policy, &plan, &progress, &r.State, &r.Open, &wake, &created, &r.CreatedBy, &updated, &r.Rev); err != nil {
		return r, err
	}
	r.Plan, r.Progress = []byte(plan), []byte(progress)
	r.CreatedAt, r.UpdatedAt = parseTS(created), parseTS(updated)
	if wake.Valid {
		t := parseTS(wake.String)
		r.Wake = &t
	}
	return r, nil
}

func scanRollouts(rows *sql.Rows, err error) ([]RolloutRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RolloutRecord
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// withNodes reads the rollouts a query selects with their nodes' progress.
func withNodes(ctx context.Context, q querier, recs []RolloutRecord, err error) ([]RolloutRecord, error) {
	if err != nil || len(recs) == 0 {
		return recs, err
	}
	ids := make([]int64, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
		recs[i].Nodes = map[string][]byte{}
	}
	rows, err := q.QueryContext(ctx, `SELECT rollout, node, progress FROM rollout_nodes WHERE rollout IN (SELECT value FROM json_each(?))`, mustJSON(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	at := make(map[int64]int, len(recs))
	for i, r := range recs {
		at[r.ID] = i
	}
	for rows.Next() {
		var id int64
		var node, progress string
		if err := rows.Scan(&id, &node, &progress); err != nil {
			return nil, err
		}
		recs[at[id]].Nodes[node] = []byte(progress)
	}
	return recs, rows.Err()
}

// oneWithNodes is withNodes of one rollout's row.
func oneWithNodes(ctx context.Context, q querier, row scanner, id int64) (RolloutRecord, error) {
	r, err := scanRollout(row)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("rollout %d %w", id, ErrNotFound)
	}
	recs, err := withNodes(ctx, q, []RolloutRecord{r}, err)
	if err != nil {
		return r, err
	}
	return recs[0], nil
}

// putRolloutNodes writes nodes' progress, each as it is given.
func (t sqliteTx) putRolloutNodes(id int64, nodes map[string][]byte) error {
	if len(nodes) == 0 {
		return nil
	}
	rows := make([][2]string, 0, len(nodes))
	for name, doc := range nodes {
		rows = append(rows, [2]string{name, string(doc)})
	}
	_, err := t.exec(`INSERT INTO rollout_nodes (rollout, node, progress)
		SELECT ?, value ->> 0, value ->> 1 FROM json_each(?) WHERE true
		ON CONFLICT (rollout, node) DO UPDATE SET progress = excluded.progress`, id, mustJSON(rows))
	return err
}

func wakeTS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ts(*t)
}

func (t sqliteTx) InsertRollout(r RolloutRecord) (int64, error) {
	res, err := t.exec(`INSERT INTO rollouts (app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at, rev)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`, r.App, r.Version, r.Policy, string(r.Plan), string(r.Progress), r.State, r.Open,
		wakeTS(r.Wake), ts(r.CreatedAt), r.CreatedBy, ts(r.UpdatedAt))
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	return id, t.putRolloutNodes(id, r.Nodes)
}

func (t sqliteTx) Rollout(id int64) (RolloutRecord, error) {
	return oneWithNodes(t.ctx, t.tx, t.tx.QueryRowContext(t.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = ?`, id), id)
}

func (t sqliteTx) RolloutRev(id int64) (rev int64, open bool, err error) {
	err = t.tx.QueryRowContext(t.ctx, `SELECT rev, open FROM rollouts WHERE id = ?`, id).Scan(&rev, &open)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("rollout %d %w", id, ErrNotFound)
	}
	return rev, open, err
}

func (t sqliteTx) OpenRollouts(app string) ([]RolloutRecord, error) {
	recs, err := scanRollouts(t.tx.QueryContext(t.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND (? = '' OR app = ?) ORDER BY id`, app, app))
	return withNodes(t.ctx, t.tx, recs, err)
}

func (t sqliteTx) UpdateRollout(r RolloutRecord) (int64, error) {
	var rev int64
	err := t.tx.QueryRowContext(t.ctx, `UPDATE rollouts SET progress = ?, state = ?, open = ?, wake_at = ?, updated_at = ?, rev = rev + 1
		WHERE id = ? RETURNING rev`, string(r.Progress), r.State, r.Open, wakeTS(r.Wake), ts(r.UpdatedAt), r.ID).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("rollout %d %w", r.ID, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return rev, t.putRolloutNodes(r.ID, r.Nodes)
}

// AssignRollout upserts the assignments in one statement that changes a row only when the
// version, the channel or the attempt differs, then bumps the generations of the nodes changed.
func (t sqliteTx) AssignRollout(names []string, app, version string, terms RolloutTerms, at time.Time) ([]string, error) {
	if err := t.release(app, version); err != nil {
		return nil, err
	}
	changed, err := queryStrings(t.ctx, t.tx, `INSERT INTO assignments (node, app, version, channel, assigned_at, rollout, attempt, min_healthy_ns, healthy_deadline_ns)
		SELECT name, ?, ?, '', ?, ?, ?, ?, ? FROM nodes WHERE name IN (SELECT value FROM json_each(?)) AND status != 'revoked'
		ON CONFLICT (node, app) DO UPDATE SET version = excluded.version, channel = '', assigned_at = excluded.assigned_at,
			rollout = excluded.rollout, attempt = excluded.attempt, min_healthy_ns = excluded.min_healthy_ns,
			healthy_deadline_ns = excluded.healthy_deadline_ns
		WHERE assignments.version != excluded.version OR assignments.channel != '' OR assignments.attempt != excluded.attempt
			OR assignments.rollout != excluded.rollout OR assignments.min_healthy_ns != excluded.min_healthy_ns
			OR assignments.healthy_deadline_ns != excluded.healthy_deadline_ns
		RETURNING node`, app, version, ts(at), terms.Rollout, terms.Attempt, int64(terms.MinHealthyTime), int64(terms.HealthyDeadline), mustJSON(names))
	if err != nil {
		return nil, err
	}
	return changed, t.bump(changed)
}

// Rollout returns one rollout.
func (s *SQLite) Rollout(ctx context.Context, id int64) (RolloutRecord, error) {
	return oneWithNodes(ctx, s.r, s.r.QueryRowContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = ?`, id), id)
}

// Rollouts returns the latest rollouts of app ("" for all), newest first.
func (s *SQLite) Rollouts(ctx context.Context, app string) ([]RolloutRecord, error) {
	recs, err := scanRollouts(s.r.QueryContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE ? = '' OR app = ? ORDER BY id DESC LIMIT ?`,
		app, app, MaxRolloutList))
	return withNodes(ctx, s.r, recs, err)
}

// OpenRollouts returns the rollouts the engine still steps, of app ("" for all), by id.
func (s *SQLite) OpenRollouts(ctx context.Context, app string) ([]RolloutRecord, error) {
	recs, err := scanRollouts(s.r.QueryContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND (? = '' OR app = ?) ORDER BY id`, app, app))
	return withNodes(ctx, s.r, recs, err)
}

// OpenRolloutIDs returns the ids of the rollouts the engine still steps.
func (s *SQLite) OpenRolloutIDs(ctx context.Context) ([]int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM rollouts WHERE open ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
