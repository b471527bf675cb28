package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// Checks, results, history and alerts in PostgreSQL, in the columns SQLite has.

// Checks lists the operator checks by name.
func (s *Store) Checks(ctx context.Context) ([]api.CheckSpec, error) {
	return checkSpecs(ctx, s.pool)
}

func checkSpecs(ctx context.Context, q querier) ([]api.CheckSpec, error) {
	rows, err := q.Query(ctx, `SELECT spec FROM checks ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanCheckSpecs(rows)
}

// CheckResults lists every node's latest results.
func (s *Store) CheckResults(ctx context.Context) ([]api.NodeCheck, error) {
	rows, err := s.pool.Query(ctx, `SELECT node, result FROM check_results ORDER BY node, check_name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanCheckResults(rows)
}

const (
	upsertResult = `INSERT INTO check_results (node, check_name, result) VALUES ($1, $2, $3)
		ON CONFLICT (node, check_name) DO UPDATE SET result = excluded.result`
	upsertBucket = `INSERT INTO check_history (node, check_name, width, start, worst, count, perf) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (node, check_name, width, start) DO UPDATE SET worst = excluded.worst, count = excluded.count, perf = excluded.perf`
)

// WriteChecks writes results and buckets in one transaction, as one batch. It takes no events
// lock: it appends no event.
func (s *Store) WriteChecks(ctx context.Context, results []api.NodeCheck, buckets []store.CheckBucket) error {
	if len(results) == 0 && len(buckets) == 0 {
		return nil
	}
	var batch pgx.Batch
	for _, r := range results {
		batch.Queue(upsertResult, r.Node, r.Check, store.ResultJSON(r.CheckResult))
	}
	for _, b := range buckets {
		batch.Queue(upsertBucket, store.BucketArgs(b)...)
	}
	return s.tx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &batch).Close() })
}

// CheckHistory lists a check's buckets of one width on a node since a time.
func (s *Store) CheckHistory(ctx context.Context, node, check string, width time.Duration, since time.Time) ([]api.CheckBucket, error) {
	rows, err := s.pool.Query(ctx, `SELECT start, width, worst, count, perf FROM check_history
		WHERE node = $1 AND check_name = $2 AND width = $3 AND start >= $4 ORDER BY start`,
		node, check, int64(width/time.Second), since.Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanCheckBuckets(rows)
}

// PruneCheckHistory forgets old buckets of one width.
func (s *Store) PruneCheckHistory(ctx context.Context, width time.Duration, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM check_history WHERE width = $1 AND start < $2`, int64(width/time.Second), before.Unix())
	return tag.RowsAffected(), err
}

// Alerts lists open alerts, or every alert.
func (s *Store) Alerts(ctx context.Context, all bool) ([]api.Alert, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+store.AlertCols+` FROM alerts WHERE $1 OR cleared_at IS NULL
		ORDER BY cleared_at IS NOT NULL, id DESC LIMIT $2`, all, store.MaxAlertList)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAlerts(rows)
}

func (u updateTx) Checks() ([]api.CheckSpec, error) { return checkSpecs(u.ctx, u.tx) }

func (u updateTx) InsertCheck(c api.CheckSpec) error {
	tag, err := u.tx.Exec(u.ctx, `INSERT INTO checks (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, c.Name, store.SpecJSON(c))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("check %q %w", c.Name, store.ErrExists)
	}
	return nil
}

func (u updateTx) DeleteCheck(name string) error {
	tag, err := u.tx.Exec(u.ctx, `DELETE FROM checks WHERE name = $1`, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("check %q %w", name, store.ErrNotFound)
	}
	_, err = u.tx.Exec(u.ctx, `DELETE FROM check_results WHERE check_name = $1`, name)
	return err
}

func (u updateTx) BumpGenerations(names []string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := u.tx.Exec(u.ctx, `UPDATE nodes SET generation = generation + 1 WHERE status <> 'revoked' AND name = ANY($1)`, names)
	return err
}

func (u updateTx) DeleteNodeResults(nodes []string) error {
	_, err := u.tx.Exec(u.ctx, `DELETE FROM check_results WHERE node = ANY($1)`, nodes)
	return err
}

func (u updateTx) PutCheckResult(r api.NodeCheck) error {
	_, err := u.tx.Exec(u.ctx, upsertResult, r.Node, r.Check, store.ResultJSON(r.CheckResult))
	return err
}

func (u updateTx) Alert(id int64) (api.Alert, error) {
	return u.alert(`WHERE id = $1`, fmt.Sprintf("alert %d", id), id)
}

func (u updateTx) OpenAlert(node, check string) (api.Alert, error) {
	return u.alert(`WHERE node = $1 AND check_name = $2 AND cleared_at IS NULL`, fmt.Sprintf("open alert of %s on %s", check, node), node, check)
}

func (u updateTx) alert(where, what string, args ...any) (api.Alert, error) {
	a, err := store.ScanAlert(u.tx.QueryRow(u.ctx, `SELECT `+store.AlertCols+` FROM alerts `+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("%s %w", what, store.ErrNotFound)
	}
	return a, err
}

func (u updateTx) ClearAlerts(nodes []string, check string, at time.Time) ([]api.Alert, error) {
	every := nodes == nil
	if every {
		nodes = []string{}
	}
	rows, err := u.tx.Query(u.ctx, `UPDATE alerts SET cleared_at = $1
		WHERE cleared_at IS NULL AND ($2 OR node = ANY($3)) AND ($4 = '' OR check_name = $4)
		RETURNING `+store.AlertCols, at.UnixNano(), every, nodes, check)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	alerts, err := store.ScanAlerts(rows)
	for i := range alerts {
		alerts[i].ClearedAt = nil // as they were
	}
	slices.SortFunc(alerts, func(a, b api.Alert) int { return cmp.Compare(a.ID, b.ID) })
	return alerts, err
}

func (u updateTx) InsertAlert(a api.Alert) (int64, error) {
	var id int64
	err := u.tx.QueryRow(u.ctx, `INSERT INTO alerts (node, check_name, state, since, output, acked_by, acked_at, comment, cleared_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`, store.AlertArgs(a)...).Scan(&id)
	return id, err
}

func (u updateTx) UpdateAlert(a api.Alert) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE alerts SET node = $1, check_name = $2, state = $3, since = $4, output = $5, acked_by = $6, acked_at = $7, comment = $8, cleared_at = $9
		WHERE id = $10`, append(store.AlertArgs(a), a.ID)...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("alert %d %w", a.ID, store.ErrNotFound)
	}
	return nil
}
