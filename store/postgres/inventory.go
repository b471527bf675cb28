package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

const siteCols = `name, tier, lat, lon, contact, labels, created_at`

func scanSite(row pgx.Row) (api.Site, error) {
	var st api.Site
	var lat, lon *float64
	if err := row.Scan(&st.Name, &st.Tier, &lat, &lon, &st.Contact, &st.Labels, &st.CreatedAt); err != nil {
		return st, err
	}
	st.Labels = store.LabelsOrEmpty(st.Labels)
	if lat != nil && lon != nil {
		st.Lat, st.Lon = lat, lon
	}
	st.CreatedAt = st.CreatedAt.UTC()
	st.Nodes = map[string]int{}
	return st, nil
}

// Sites lists sites by name, with node counts by status.
func (s *Store) Sites(ctx context.Context) ([]api.Site, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+siteCols+` FROM sites ORDER BY name`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Site, error) { return scanSite(r) })
	if err != nil {
		return nil, err
	}
	rows, err = s.pool.Query(ctx, `SELECT site, status, count(*) FROM nodes GROUP BY site, status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return out, store.ScanNodeCounts(rows, out)
}

// Site returns one site with its node counts.
func (s *Store) Site(ctx context.Context, name string) (api.Site, error) {
	st, err := scanSite(s.pool.QueryRow(ctx, `SELECT `+siteCols+` FROM sites WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("site %q %w", name, store.ErrNotFound)
	}
	if err != nil {
		return st, err
	}
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM nodes WHERE site = $1 GROUP BY status`, name)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return st, err
		}
		st.Nodes[status] = n
	}
	return st, rows.Err()
}

const tokenCols = `id, secret_hash, kind, coalesce(site, ''), role, uses_left, expires_at, created_at, description`

func scanToken(row pgx.Row) (store.TokenRecord, error) {
	var t store.TokenRecord
	err := row.Scan(&t.ID, &t.SecretHash, &t.Kind, &t.Site, &t.Role, &t.UsesLeft, &t.ExpiresAt, &t.CreatedAt, &t.Description)
	if t.ExpiresAt != nil {
		*t.ExpiresAt = t.ExpiresAt.UTC()
	}
	t.CreatedAt = t.CreatedAt.UTC()
	return t, err
}

// Token returns one token by id.
func (s *Store) Token(ctx context.Context, id string) (store.TokenRecord, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("token %q %w", id, store.ErrNotFound)
	}
	return t, err
}

// Tokens lists all tokens, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]store.TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.TokenRecord, error) { return scanToken(r) })
}

// queryStrings runs a query of one text column and returns its values.
func queryStrings(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
