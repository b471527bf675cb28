package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// Mesh probes in PostgreSQL: one row each, the document as JSON text. Update's Probe locks the
// row, so the leader's engine and an agent's report on another replica take turns.

func scanProbes(rows pgx.Rows, err error) ([]store.ProbeRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanProbes(rows, utc)
}

func probeNotFound(id int64, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("probe %d %w", id, store.ErrNotFound)
	}
	return err
}

func (u updateTx) InsertProbe(p store.ProbeRecord) (int64, error) {
	var id int64
	err := u.tx.QueryRow(u.ctx, `INSERT INTO probes (doc, state, open, created_at, created_by, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, string(p.Doc), p.State, p.Open, pgTime(p.CreatedAt), p.CreatedBy, pgTime(p.UpdatedAt)).Scan(&id)
	return id, err
}

func (u updateTx) Probe(id int64) (store.ProbeRecord, error) {
	p, err := store.ScanProbe(u.tx.QueryRow(u.ctx, `SELECT `+store.ProbeCols+` FROM probes WHERE id = $1 FOR UPDATE`, id), utc)
	return p, probeNotFound(id, err)
}

func (u updateTx) OpenProbes() ([]store.ProbeRecord, error) {
	return scanProbes(u.tx.Query(u.ctx, `SELECT `+store.ProbeCols+` FROM probes WHERE open ORDER BY id`))
}

func (u updateTx) UpdateProbe(p store.ProbeRecord) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE probes SET doc = $1, state = $2, open = $3, updated_at = $4 WHERE id = $5`,
		string(p.Doc), p.State, p.Open, pgTime(p.UpdatedAt), p.ID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("probe %d %w", p.ID, store.ErrNotFound)
	}
	return nil
}

// Probe returns one probe.
func (s *Store) Probe(ctx context.Context, id int64) (store.ProbeRecord, error) {
	p, err := store.ScanProbe(s.pool.QueryRow(ctx, `SELECT `+store.ProbeCols+` FROM probes WHERE id = $1`, id), utc)
	return p, probeNotFound(id, err)
}

// Probes returns the latest probes, newest first.
func (s *Store) Probes(ctx context.Context) ([]store.ProbeRecord, error) {
	return scanProbes(s.pool.Query(ctx, `SELECT `+store.ProbeCols+` FROM probes ORDER BY id DESC LIMIT $1`, store.MaxProbeList))
}

// OpenProbes returns the open probes, by id.
func (s *Store) OpenProbes(ctx context.Context) ([]store.ProbeRecord, error) {
	return scanProbes(s.pool.Query(ctx, `SELECT `+store.ProbeCols+` FROM probes WHERE open ORDER BY id`))
}

// PruneProbes forgets old completed probes beyond the newest keep.
func (s *Store) PruneProbes(ctx context.Context, before time.Time, keep int) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM probes WHERE NOT open AND updated_at < $1
		AND id NOT IN (SELECT id FROM probes ORDER BY id DESC LIMIT $2)`, pgTime(before), keep)
	return tag.RowsAffected(), err
}
