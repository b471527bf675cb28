package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Checks, results, history and alerts in SQLite.

// Checks lists the operator checks by name.
func (s *SQLite) Checks(ctx context.Context) ([]api.CheckSpec, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT spec FROM checks ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanCheckSpecs(rows)
}

// CheckResults lists every node's latest results.
func (s *SQLite) CheckResults(ctx context.Context) ([]api.NodeCheck, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT node, result FROM check_results ORDER BY node, check_name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanCheckResults(rows)
}

// WriteChecks writes results and buckets in one transaction, with a statement prepared once
// for each kind.
func (s *SQLite) WriteChecks(ctx context.Context, results []api.NodeCheck, buckets []CheckBucket) error {
	if len(results) == 0 && len(buckets) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.PrepareContext(ctx, `INSERT INTO check_results (node, check_name, result) VALUES (?, ?, ?)
			ON CONFLICT (node, check_name) DO UPDATE SET result = excluded.result`)
		if err != nil {
			return err
		}
		defer res.Close()
		for _, r := range results {
			if _, err := res.ExecContext(ctx, r.Node, r.Check, ResultJSON(r.CheckResult)); err != nil {
				return err
			}
		}
		bs, err := tx.PrepareContext(ctx, `INSERT INTO check_history (node, check_name, width, start, worst, count, perf) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (node, check_name, width, start) DO UPDATE SET worst = excluded.worst, count = excluded.count, perf = excluded.perf`)
		if err != nil {
			return err
		}
		defer bs.Close()
		for _, b := range buckets {
			if _, err := bs.ExecContext(ctx, BucketArgs(b)...); err != nil {
				return err
			}
		}
		return nil
	})
}

// CheckHistory lists a check's buckets of one width on a node since a time.
func (s *SQLite) CheckHistory(ctx context.Context, node, check string, width time.Duration, since time.Time) ([]api.CheckBucket, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT start, width, worst, count, perf FROM check_history
		WHERE node = ? AND check_name = ? AND width = ? AND start >= ? ORDER BY start`,
		node, check, int64(width/time.Second), since.Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanCheckBuckets(rows)
}

// PruneCheckHistory forgets old buckets of one width.
func (s *SQLite) PruneCheckHistory(ctx context.Context, width time.Duration, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM check_history WHERE width = ? AND start < ?`, int64(width/time.Second), before.Unix())
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return n, err
}

// Alerts lists open alerts, or every alert.
func (s *SQLite) Alerts(ctx context.Context, all bool) ([]api.Alert, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+AlertCols+` FROM alerts WHERE ? OR cleared_at IS NULL
		ORDER BY cleared_at IS NOT NULL, id DESC LIMIT ?`, all, MaxAlertList)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanAlerts(rows)
}

func (t sqliteTx) Checks() ([]api.CheckSpec, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT spec FROM checks ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanCheckSpecs(rows)
}

func (t sqliteTx) InsertCheck(c api.CheckSpec) error {
	res, err := t.exec(`INSERT INTO checks (name, spec) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, c.Name, SpecJSON(c))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("check %q %w", c.Name, ErrExists)
	}
	return nil
}

func (t sqliteTx) DeleteCheck(name string) error {
	res, err := t.exec(`DELETE FROM checks WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("check %q %w", name, ErrNotFound)
	}
	_, err = t.exec(`DELETE FROM check_results WHERE check_name = ?`, name)
	return err
}

func (t sqliteTx) BumpGenerations(names []string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := t.exec(`UPDATE nodes SET generation = generation + 1
		WHERE status != 'revoked' AND name IN (SELECT value FROM json_each(?))`, mustJSON(names))
	return err
}

func (t sqliteTx) DeleteNodeResults(nodes []string) error {
	_, err := t.exec(`DELETE FROM check_results WHERE node IN (SELECT value FROM json_each(?))`, mustJSON(nodes))
	return err
}

func (t sqliteTx) PutCheckResult(r api.NodeCheck) error {
	_, err := t.exec(`INSERT INTO check_results (node, check_name, result) VALUES (?, ?, ?)
		ON CONFLICT (node, check_name) DO UPDATE SET result = excluded.result`, r.Node, r.Check, ResultJSON(r.CheckResult))
	return err
}

func (t sqliteTx) Alert(id int64) (api.Alert, error) {
	return t.alert(`WHERE id = ?`, fmt.Sprintf("alert %d", id), id)
}

func (t sqliteTx) OpenAlert(node, check string) (api.Alert, error) {
	return t.alert(`WHERE node = ? AND check_name = ? AND cleared_at IS NULL`, fmt.Sprintf("open alert of %s on %s", check, node), node, check)
}

func (t sqliteTx) alert(where, what string, args ...any) (api.Alert, error) {
	a, err := ScanAlert(t.tx.QueryRowContext(t.ctx, `SELECT `+AlertCols+` FROM alerts `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("%s %w", what, ErrNotFound)
	}
	return a, err
}

func (t sqliteTx) ClearAlerts(nodes []string, check string, at time.Time) ([]api.Alert, error) {
	const where = ` WHERE cleared_at IS NULL AND (? OR node IN (SELECT value FROM json_each(?))) AND (? = '' OR check_name = ?)`
	args := []any{nodes == nil, mustJSON(nodes), check, check}
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+AlertCols+` FROM alerts`+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	alerts, err := ScanAlerts(rows)
	rows.Close()
	if err != nil || len(alerts) == 0 {
		return alerts, err
	}
	_, err = t.exec(`UPDATE alerts SET cleared_at = ?`+where, append([]any{at.UnixNano()}, args...)...)
	return alerts, err
}

func (t sqliteTx) InsertAlert(a api.Alert) (int64, error) {
	res, err := t.exec(`INSERT INTO alerts (node, check_name, state, since, output, acked_by, acked_at, comment, cleared_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, AlertArgs(a)...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (t sqliteTx) UpdateAlert(a api.Alert) error {
	res, err := t.exec(`UPDATE alerts SET node = ?, check_name = ?, state = ?, since = ?, output = ?, acked_by = ?, acked_at = ?, comment = ?, cleared_at = ?
		WHERE id = ?`, append(AlertArgs(a), a.ID)...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("alert %d %w", a.ID, ErrNotFound)
	}
	return nil
}
