package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Mesh probes in SQLite: one row each, the document as JSON text.

func scanSQLiteProbe(row scanner) (ProbeRecord, error) { return ScanProbe(row, parseTS) }

func scanSQLiteProbes(rows *sql.Rows, err error) ([]ProbeRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanProbes(rows, parseTS)
}

func probeNotFound(id int64, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("probe %d %w", id, ErrNotFound)
	}
	return err
}

func (t sqliteTx) InsertProbe(p ProbeRecord) (int64, error) {
	res, err := t.exec(`INSERT INTO probes (doc, state, open, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		string(p.Doc), p.State, p.Open, ts(p.CreatedAt), p.CreatedBy, ts(p.UpdatedAt))
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (t sqliteTx) Probe(id int64) (ProbeRecord, error) {
	p, err := scanSQLiteProbe(t.tx.QueryRowContext(t.ctx, `SELECT `+ProbeCols+` FROM probes WHERE id = ?`, id))
	return p, probeNotFound(id, err)
}

func (t sqliteTx) OpenProbes() ([]ProbeRecord, error) {
	return scanSQLiteProbes(t.tx.QueryContext(t.ctx, `SELECT `+ProbeCols+` FROM probes WHERE open ORDER BY id`))
}

func (t sqliteTx) UpdateProbe(p ProbeRecord) error {
	res, err := t.exec(`UPDATE probes SET doc = ?, state = ?, open = ?, updated_at = ? WHERE id = ?`,
		string(p.Doc), p.State, p.Open, ts(p.UpdatedAt), p.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("probe %d %w", p.ID, ErrNotFound)
	}
	return nil
}

// Probe returns one probe.
func (s *SQLite) Probe(ctx context.Context, id int64) (ProbeRecord, error) {
	p, err := scanSQLiteProbe(s.r.QueryRowContext(ctx, `SELECT `+ProbeCols+` FROM probes WHERE id = ?`, id))
	return p, probeNotFound(id, err)
}

// Probes returns the latest probes, newest first.
func (s *SQLite) Probes(ctx context.Context) ([]ProbeRecord, error) {
	return scanSQLiteProbes(s.r.QueryContext(ctx, `SELECT `+ProbeCols+` FROM probes ORDER BY id DESC LIMIT ?`, MaxProbeList))
}

// OpenProbes returns the open probes, by id.
func (s *SQLite) OpenProbes(ctx context.Context) ([]ProbeRecord, error) {
	return scanSQLiteProbes(s.r.QueryContext(ctx, `SELECT `+ProbeCols+` FROM probes WHERE open ORDER BY id`))
}

// PruneProbes forgets old completed probes beyond the newest keep. Times are RFC 3339 text,
// which does not sort as text (fractions of a second are trimmed), so julianday compares them.
func (s *SQLite) PruneProbes(ctx context.Context, before time.Time, keep int) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM probes WHERE NOT open AND julianday(updated_at) < julianday(?)
			AND id NOT IN (SELECT id FROM probes ORDER BY id DESC LIMIT ?)`, ts(before), keep)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return n, err
}
