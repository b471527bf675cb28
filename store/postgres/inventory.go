package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// CreateSite adds a site.
func (s *Store) CreateSite(ctx context.Context, site api.Site) (api.Event, error) {
	var ev api.Event
	err := s.write(ctx, func(tx writeTx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO sites (name, tier, lat, lon, contact, created_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO NOTHING`, site.Name, site.Tier, site.Lat, site.Lon, site.Contact, pgTime(site.CreatedAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("site %q %w", site.Name, store.ErrExists)
		}
		data := api.SiteAdded{Tier: site.Tier, Lat: site.Lat, Lon: site.Lon}
		ev, err = tx.appendEvent(ctx, api.NewEvent(site.CreatedAt, api.EventSiteAdded, site.Name, data))
		return err
	})
	return ev, err
}

const siteCols = `name, tier, lat, lon, contact, created_at`

func scanSite(row pgx.Row) (api.Site, error) {
	var st api.Site
	var lat, lon *float64
	if err := row.Scan(&st.Name, &st.Tier, &lat, &lon, &st.Contact, &st.CreatedAt); err != nil {
		return st, err
	}
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

// DeleteSite removes a site (and with force, its nodes).
func (s *Store) DeleteSite(ctx context.Context, name string, force bool, now time.Time) ([]api.Event, error) {
	var evs []api.Event
	err := s.write(ctx, func(tx writeTx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sites WHERE name = $1)`, name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("site %q %w", name, store.ErrNotFound)
		}
		live, err := queryStrings(ctx, tx, `SELECT name FROM nodes WHERE site = $1 AND status != 'revoked' ORDER BY name`, name)
		if err != nil {
			return err
		}
		if len(live) > 0 && !force {
			return fmt.Errorf("site %q has %d node(s); remove them first or use --force: %w", name, len(live), store.ErrConflict)
		}
		for _, n := range live {
			ev, err := tx.appendEvent(ctx, api.NewEvent(now, api.EventNodeRevoked, n, api.NodeRevoked{Site: name, Reason: "site removed"}))
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM nodes WHERE site = $1`, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sites WHERE name = $1`, name); err != nil {
			return err
		}
		ev, err := tx.appendEvent(ctx, api.NewEvent(now, api.EventSiteRemoved, name, api.SiteRemoved{NodesRevoked: len(live)}))
		evs = append(evs, ev)
		return err
	})
	return evs, err
}

// CreateToken stores a token.
func (s *Store) CreateToken(ctx context.Context, t store.TokenRecord) (api.Event, error) {
	var ev api.Event
	err := s.write(ctx, func(tx writeTx) error {
		var site *string
		if t.Site != "" {
			site = &t.Site
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sites WHERE name = $1)`, t.Site).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return fmt.Errorf("site %q %w", t.Site, store.ErrNotFound)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO tokens (id, secret_hash, kind, site, role, uses_left, expires_at, created_at, description)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.ID, t.SecretHash, t.Kind, site, t.Role, t.UsesLeft, pgTimePtr(t.ExpiresAt), pgTime(t.CreatedAt), t.Description)
		if isUnique(err) {
			return fmt.Errorf("token %q %w", t.ID, store.ErrExists)
		}
		if err != nil {
			return err
		}
		ev, err = tx.appendEvent(ctx, api.NewEvent(t.CreatedAt, api.EventTokenCreated, t.ID, api.TokenCreated{Kind: t.Kind, Site: t.Site, Role: t.Role}))
		return err
	})
	return ev, err
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

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, id string, now time.Time) (api.Event, error) {
	var ev api.Event
	err := s.write(ctx, func(tx writeTx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("token %q %w", id, store.ErrNotFound)
		}
		ev, err = tx.appendEvent(ctx, api.NewEvent(now, api.EventTokenRevoked, id, nil))
		return err
	})
	return ev, err
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
