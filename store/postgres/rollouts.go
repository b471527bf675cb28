package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// Rollouts in PostgreSQL: one row each, the plan and progress as JSON text. Update's Rollout
// locks the row, so the leader's engine and an operator's change on another replica take turns.

const rolloutCols = `id, app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at`

func scanRollout(row pgx.Row) (store.RolloutRecord, error) {
	var r store.RolloutRecord
	var plan, progress string
	if err := row.Scan(&r.ID, &r.App, &r.Version, &r.Policy, &plan, &progress, &r.State, &r.Open, &r.Wake, &r.CreatedAt, &r.CreatedBy, &r.UpdatedAt); err != nil {
		return r, err
	}
	r.Plan, r.Progress = []byte(plan), []byte(progress)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	if r.Wake != nil {
		w := r.Wake.UTC()
		r.Wake = &w
	}
	return r, nil
}

func scanRollouts(rows pgx.Rows, err error) ([]store.RolloutRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.RolloutRecord
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func rolloutNotFound(id int64, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("rollout %d %w", id, store.ErrNotFound)
	}
	return err
}

func (u updateTx) InsertRollout(r store.RolloutRecord) (int64, error) {
	var id int64
	err := u.tx.QueryRow(u.ctx, `INSERT INTO rollouts (app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`, r.App, r.Version, r.Policy, string(r.Plan), string(r.Progress),
		r.State, r.Open, pgTimePtr(r.Wake), pgTime(r.CreatedAt), r.CreatedBy, pgTime(r.UpdatedAt)).Scan(&id)
	return id, err
}

func (u updateTx) Rollout(id int64) (store.RolloutRecord, error) {
	r, err := scanRollout(u.tx.QueryRow(u.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = $1 FOR UPDATE`, id))
	return r, rolloutNotFound(id, err)
}

func (u updateTx) OpenRollouts(app string) ([]store.RolloutRecord, error) {
	return scanRollouts(u.tx.Query(u.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND ($1 = '' OR app = $1) ORDER BY id`, app))
}

func (u updateTx) UpdateRollout(r store.RolloutRecord) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE rollouts SET progress = $1, state = $2, open = $3, wake_at = $4, updated_at = $5 WHERE id = $6`,
		string(r.Progress), r.State, r.Open, pgTimePtr(r.Wake), pgTime(r.UpdatedAt), r.ID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rollout %d %w", r.ID, store.ErrNotFound)
	}
	return nil
}

// AssignRollout upserts the assignments and bumps the generations of the nodes it changed (another
// version, channel, rollout or attempt), in one statement.
func (u updateTx) AssignRollout(names []string, app, version string, terms store.RolloutTerms, at time.Time) ([]string, error) {
	var haveRelease bool
	var changed []string
	if err := u.tx.QueryRow(u.ctx, `WITH r AS (SELECT app, version FROM releases WHERE app = $2 AND version = $3),
		assigned AS (INSERT INTO assignments (node, app, version, channel, assigned_at, rollout, attempt, min_healthy_ns, healthy_deadline_ns)
			SELECT n.name, r.app, r.version, '', $4, $5, $6, $7, $8 FROM nodes n, r WHERE n.name = ANY($1) AND n.status != 'revoked'
			ON CONFLICT (node, app) DO UPDATE SET version = excluded.version, channel = '', assigned_at = excluded.assigned_at,
				rollout = excluded.rollout, attempt = excluded.attempt, min_healthy_ns = excluded.min_healthy_ns,
				healthy_deadline_ns = excluded.healthy_deadline_ns
				WHERE assignments.version != excluded.version OR assignments.channel != '' OR assignments.attempt != excluded.attempt
					OR assignments.rollout != excluded.rollout OR assignments.min_healthy_ns != excluded.min_healthy_ns
					OR assignments.healthy_deadline_ns != excluded.healthy_deadline_ns
			RETURNING node),
		locked AS MATERIALIZED (`+lockNodes(`SELECT node FROM assigned`)+`),
		bumped AS (UPDATE nodes SET generation = generation + 1 FROM locked WHERE nodes.name = locked.name RETURNING nodes.name)
		SELECT EXISTS (SELECT FROM r), array(SELECT name FROM bumped ORDER BY name COLLATE "C")`,
		names, app, version, pgTime(at), terms.Rollout, terms.Attempt, int64(terms.MinHealthyTime), int64(terms.HealthyDeadline)).Scan(&haveRelease, &changed); err != nil {
		return nil, err
	}
	if !haveRelease {
		return nil, fmt.Errorf("release %s@%s %w", app, version, store.ErrNotFound)
	}
	if len(changed) == 0 {
		return nil, nil
	}
	return changed, nil
}

// Rollout returns one rollout.
func (s *Store) Rollout(ctx context.Context, id int64) (store.RolloutRecord, error) {
	r, err := scanRollout(s.pool.QueryRow(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = $1`, id))
	return r, rolloutNotFound(id, err)
}

// Rollouts returns the latest rollouts of app ("" for all), newest first.
func (s *Store) Rollouts(ctx context.Context, app string) ([]store.RolloutRecord, error) {
	return scanRollouts(s.pool.Query(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE $1 = '' OR app = $1 ORDER BY id DESC LIMIT $2`,
		app, store.MaxRolloutList))
}

// OpenRollouts returns the rollouts the engine still steps, of app ("" for all), by id.
func (s *Store) OpenRollouts(ctx context.Context, app string) ([]store.RolloutRecord, error) {
	return scanRollouts(s.pool.Query(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND ($1 = '' OR app = $1) ORDER BY id`, app))
}
