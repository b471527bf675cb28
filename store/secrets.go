package store

import (
	"context"
	"database/sql"
	"errors"
)

// PutSecret stores value under name unless a value is stored there already, and returns the
// stored value. Both statements run in one write transaction, and SQLite's writers take turns,
// so two callers of one name get the same value back.
func (s *SQLite) PutSecret(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := CheckSecret(name, value); err != nil {
		return nil, err
	}
	var stored []byte
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&stored)
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// CheckSecret refuses what PutSecret must not store, in the same words on every backend: a
// secret without a name, or an empty one, which could not be told from none.
func CheckSecret(name string, value []byte) error {
	if name == "" {
		return errors.New("a secret needs a name")
	}
	if len(value) == 0 {
		return errors.New("secret " + name + " is empty")
	}
	return nil
}
