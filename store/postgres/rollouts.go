package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// Rollouts in PostgreSQL: one row each, the plan and progress as JSON text, and a row for each
// node's progress in rollout_nodes. Update's Rollout and RolloutRev lock the rollout's row, so
// the leader's engine and an operator's change on another replica take turns.

const rolloutCols = `id, app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at, rev`

func scanRollout(row pgx.Row) (store.RolloutRecord, error) {
	var r store.RolloutRecord
	var plan, progress string
	if err := row.Scan(&r.ID, &r.App, &r.Version, &r.Policy, &plan, &progress, &r.State, &r.Open, &r.Wake, &r.CreatedAt, &r.CreatedBy, &r.UpdatedAt, &r.Rev); err != nil {
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

// withNodes reads the rollouts a query selects with their nodes' progress.
func withNodes(ctx context.Context, q querier, recs []store.RolloutRecord, err error) ([]store.RolloutRecord, error) {
	if err != nil || len(recs) == 0 {
		return recs, err
	}
	ids := make([]int64, len(recs))
	at := make(map[int64]int, len(recs))
	for i, r := range recs {
		ids[i], at[r.ID] = r.ID, i
		recs[i].Nodes = map[string][]byte{}
	}
	rows, err := q.Query(ctx, `SELECT rollout, node, progress FROM rollout_nodes WHERE rollout = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
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
func oneWithNodes(ctx context.Context, q querier, row pgx.Row, id int64) (store.RolloutRecord, error) {
	r, err := scanRollout(row)
	if err != nil {
		return r, rolloutNotFound(id, err)
	}
	recs, err := withNodes(ctx, q, []store.RolloutRecord{r}, nil)
	if err != nil {
		return r, err
	}
	return recs[0], nil
}

// putRolloutNodes writes nodes' progress, each as it is given, in one statement.
func (u updateTx) putRolloutNodes(id int64, nodes map[string][]byte) error {
	if len(nodes) == 0 {
		return nil
	}
	names, docs := make([]string, 0, len(nodes)), make([]string, 0, len(nodes))
	for name, doc := range nodes {
		names, docs = append(names, name), append(docs, string(doc))
	}
	_, err := u.tx.Exec(u.ctx, `INSERT INTO rollout_nodes (rollout, node, progress) SELECT $1, n, d FROM unnest($2::text[], $3::text[]) AS u(n, d)
		ON CONFLICT (rollout, node) DO UPDATE SET progress = excluded.progress`, id, names, docs)
	return err
}

func (u updateTx) InsertRollout(r store.RolloutRecord) (int64, error) {
	var id int64
	err := u.tx.QueryRow(u.ctx, `INSERT INTO rollouts (app, version, policy, plan, progress, state, open, wake_at, created_at, created_by, updated_at, rev)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1) RETURNING id`, r.App, r.Version, r.Policy, string(r.Plan), string(r.Progress),
		r.State, r.Open, pgTimePtr(r.Wake), pgTime(r.CreatedAt), r.CreatedBy, pgTime(r.UpdatedAt)).Scan(&id)
	if err != nil {
		return 0, err
	}
	return id, u.putRolloutNodes(id, r.Nodes)
}

func (u updateTx) Rollout(id int64) (store.RolloutRecord, error) {
	return oneWithNodes(u.ctx, u.tx, u.tx.QueryRow(u.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = $1 FOR UPDATE`, id), id)
}

func (u updateTx) RolloutRev(id int64) (rev int64, open bool, err error) {
	err = u.tx.QueryRow(u.ctx, `SELECT rev, open FROM rollouts WHERE id = $1 FOR UPDATE`, id).Scan(&rev, &open)
	return rev, open, rolloutNotFound(id, err)
}

func (u updateTx) OpenRollouts(app string) ([]store.RolloutRecord, error) {
	recs, err := scanRollouts(u.tx.Query(u.ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND ($1 = '' OR app = $1) ORDER BY id`, app))
	return withNodes(u.ctx, u.tx, recs, err)
}

func (u updateTx) UpdateRollout(r store.RolloutRecord) (int64, error) {
	var rev int64
	err := u.tx.QueryRow(u.ctx, `UPDATE rollouts SET progress = $1, state = $2, open = $3, wake_at = $4, updated_at = $5, rev = rev + 1
		WHERE id = $6 RETURNING rev`, string(r.Progress), r.State, r.Open, pgTimePtr(r.Wake), pgTime(r.UpdatedAt), r.ID).Scan(&rev)
	if err != nil {
		return 0, rolloutNotFound(r.ID, err)
	}
	return rev, u.putRolloutNodes(r.ID, r.Nodes)
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
	return oneWithNodes(ctx, s.pool, s.pool.QueryRow(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = $1`, id), id)
}

// Rollouts returns the latest rollouts of app ("" for all), newest first.
func (s *Store) Rollouts(ctx context.Context, app string) ([]store.RolloutRecord, error) {
	recs, err := scanRollouts(s.pool.Query(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE $1 = '' OR app = $1 ORDER BY id DESC LIMIT $2`,
		app, store.MaxRolloutList))
	return withNodes(ctx, s.pool, recs, err)
}

// OpenRollouts returns the rollouts the engine still steps, of app ("" for all), by id.
func (s *Store) OpenRollouts(ctx context.Context, app string) ([]store.RolloutRecord, error) {
	recs, err := scanRollouts(s.pool.Query(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE open AND ($1 = '' OR app = $1) ORDER BY id`, app))
	return withNodes(ctx, s.pool, recs, err)
}

// OpenRolloutIDs returns the ids of the rollouts the engine still steps.
func (s *Store) OpenRolloutIDs(ctx context.Context) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM rollouts WHERE open ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}
