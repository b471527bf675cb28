package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Rollouts in SQLite: one row each, the plan and progress as JSON text.

const rolloutCols = `id, app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanRollout(row scanner) (RolloutRecord, error) {
	var r RolloutRecord
	var plan, progress, created, updated string
	var wake sql.NullString
	if err := row.Scan(&r.ID, &r.App, &r.Version, &r.Policy, &plan, &progress, &r.State, &r.Open, &wake, &created, &r.CreatedBy, &updated); err != nil {
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

func wakeTS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return ts(*t)
}

func (t sqliteTx) InsertRollout(r RolloutRecord) (int64, error) {
	res, err := t.exec(`INSERT INTO rollouts (app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.App, r.Version, r.Policy, string(r.Plan), string(r.Progress), r.State, r.Open,
		wakeTS(r.Wake), ts(r.CreatedAt), r.CreatedBy, ts(r.UpdatedAt))
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (t sqliteTx) Rollout(id int64) (RolloutRecord, error) {
	r, err := scanRollout(t.tx.QueryRowContext(t.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("rollout %d %w", id, ErrNotFound)
	}
	return r, err
}

func (t sqliteTx) OpenRollouts(app string) ([]RolloutRecord, error) {
	return scanRollouts(t.tx.QueryContext(t.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND (? = '' OR app = ?) ORDER BY id`, app, app))
}

func (t sqliteTx) UpdateRollout(r RolloutRecord) error {
	res, err := t.exec(`UPDATE rollouts SET progress = ?, state = ?, open = ?, wake_at = ?, updated_at = ? WHERE id = ?`,
		string(r.Progress), r.State, r.Open, wakeTS(r.Wake), ts(r.UpdatedAt), r.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("rollout %d %w", r.ID, ErrNotFound)
	}
	return nil
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
	r, err := scanRollout(s.r.QueryRowContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("rollout %d %w", id, ErrNotFound)
	}
	return r, err
}

// Rollouts returns the latest rollouts of app ("" for all), newest first.
func (s *SQLite) Rollouts(ctx context.Context, app string) ([]RolloutRecord, error) {
	return scanRollouts(s.r.QueryContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE ? = '' OR app = ? ORDER BY id DESC LIMIT ?`,
		app, app, MaxRolloutList))
}

// OpenRollouts returns the rollouts the engine still steps, of app ("" for all), by id.
func (s *SQLite) OpenRollouts(ctx context.Context, app string) ([]RolloutRecord, error) {
	return scanRollouts(s.r.QueryContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND (? = '' OR app = ?) ORDER BY id`, app, app))
}
