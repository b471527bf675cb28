package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// PutSecret stores value under name unless a value is stored there already, and returns the
// stored value; replicas that put one name at once all get the same value back.
//
// The two statements run each in a transaction of its own, not together in one: an INSERT that
// meets a row another replica is inserting waits for that replica to commit (or roll back, and
// then inserts), and the SELECT after it takes a snapshot of its own, which holds the winner's
// row. In one transaction at REPEATABLE READ or above, or in one statement, the snapshot would
// predate that commit and find nothing.
func (s *Store) PutSecret(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := store.CheckSecret(name, value); err != nil {
		return nil, err
	}
	var stored []byte
	err := s.pool.QueryRow(ctx, `INSERT INTO secrets (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO NOTHING RETURNING value`, name, value).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.pool.QueryRow(ctx, `SELECT value FROM secrets WHERE name = $1`, name).Scan(&stored)
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return stored, nil
}
