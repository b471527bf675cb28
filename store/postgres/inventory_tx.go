package postgres

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// The inventory's primitives of Update's Tx: sites, tokens and nodes. As elsewhere in Update,
// what they report as ErrNotFound or ErrExists they find without a failed statement.

func (u updateTx) Site(name string) (api.Site, error) {
	st, err := scanSite(u.tx.QueryRow(u.ctx, `SELECT `+siteCols+` FROM sites WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("site %q %w", name, store.ErrNotFound)
	}
	return st, err
}

func (u updateTx) InsertSite(site api.Site) error {
	tag, err := u.tx.Exec(u.ctx, `INSERT INTO sites (name, tier, lat, lon, contact, labels, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO NOTHING`, site.Name, site.Tier, site.Lat, site.Lon, site.Contact, store.LabelsOrEmpty(site.Labels), pgTime(site.CreatedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("site %q %w", site.Name, store.ErrExists)
	}
	return nil
}

func (u updateTx) SetSiteLabels(name string, labels map[string]string) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE sites SET labels = $2 WHERE name = $1`, name, store.LabelsOrEmpty(labels))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("site %q %w", name, store.ErrNotFound)
	}
	return nil
}

func (u updateTx) DeleteSite(name string) error {
	if _, err := u.tx.Exec(u.ctx, `DELETE FROM nodes WHERE site = $1`, name); err != nil {
		return err
	}
	tag, err := u.tx.Exec(u.ctx, `DELETE FROM sites WHERE name = $1`, name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("site %q %w", name, store.ErrNotFound)
	}
	return nil
}

func (u updateTx) SiteNodes(site string) ([]string, error) {
	return queryStrings(u.ctx, u.tx, `SELECT name FROM nodes WHERE site = $1 AND status != 'revoked' ORDER BY name COLLATE "C"`, site)
}

func (u updateTx) Token(id string) (store.TokenRecord, error) {
	t, err := scanToken(u.tx.QueryRow(u.ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("token %q %w", id, store.ErrNotFound)
	}
	return t, err
}

func (u updateTx) Tokens() ([]store.TokenRecord, error) {
	rows, err := u.tx.Query(u.ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.TokenRecord, error) { return scanToken(r) })
}

func (u updateTx) InsertToken(t store.TokenRecord) error {
	var site *string
	if t.Site != "" {
		if _, err := u.Site(t.Site); err != nil {
			return err
		}
		site = &t.Site
	}
	tag, err := u.tx.Exec(u.ctx, `INSERT INTO tokens (id, secret_hash, kind, site, role, uses_left, expires_at, created_at, description)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
		t.ID, t.SecretHash, t.Kind, site, t.Role, t.UsesLeft, pgTimePtr(t.ExpiresAt), pgTime(t.CreatedAt), t.Description)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %q %w", t.ID, store.ErrExists)
	}
	return nil
}

func (u updateTx) DeleteToken(id string) error {
	tag, err := u.tx.Exec(u.ctx, `DELETE FROM tokens WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %q %w", id, store.ErrNotFound)
	}
	return nil
}

func (u updateTx) SpendToken(id string) error {
	var found bool
	if err := u.tx.QueryRow(u.ctx, `WITH t AS (SELECT id FROM tokens WHERE id = $1),
		spent AS (UPDATE tokens SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left IS NOT NULL)
		SELECT EXISTS (SELECT FROM t)`, id).Scan(&found); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("token %q %w", id, store.ErrNotFound)
	}
	return nil
}

func (u updateTx) Nodes(names []string) (map[string]api.Node, error) {
	query, args := nodeQuery+` WHERE n.name = ANY($1)`, []any{names}
	if names == nil {
		query, args = nodeQuery, nil
	}
	rows, err := u.tx.Query(u.ctx, query, args...)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Node, error) { return scanNode(r) })
	if err != nil {
		return nil, err
	}
	out := make(map[string]api.Node, len(found))
	for _, n := range found {
		out[n.Name] = n
	}
	return out, nil
}

func (u updateTx) NodeWithKey(publicKey string) (string, error) {
	var name string
	err := u.tx.QueryRow(u.ctx, `SELECT name FROM nodes WHERE public_key = $1`, publicKey).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("node with this public key %w", store.ErrNotFound)
	}
	return name, err
}

func (u updateTx) InsertNode(site string, n store.NodeRecord, at time.Time) error {
	var status string
	err := u.tx.QueryRow(u.ctx, `SELECT status FROM nodes WHERE name = $1`, n.Name).Scan(&status)
	switch {
	case err == nil && status != api.StatusRevoked:
		return fmt.Errorf("node %q %w", n.Name, store.ErrExists)
	case err == nil:
		if _, err := u.tx.Exec(u.ctx, `DELETE FROM nodes WHERE name = $1`, n.Name); err != nil {
			return err
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	_, err = u.tx.Exec(u.ctx, `INSERT INTO nodes (name, site, public_key, status, labels, facts, generation, last_seen, enrolled_at)
		VALUES ($1, $2, $3, 'up', $4, $5, 1, $6, $6)`, n.Name, site, n.PublicKey, store.LabelsOrEmpty(n.Labels), n.Facts, pgTime(at))
	return err
}

func (u updateTx) SetNodeStatus(name, status string) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE nodes SET status = $2 WHERE name = $1`, name, status)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("node %q %w", name, store.ErrNotFound)
	}
	return nil
}

// SetLabels writes every node's labels in one statement, locking the nodes in the order the
// other bulk writes lock them.
func (u updateTx) SetLabels(labels map[string]map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	_, err := u.tx.Exec(u.ctx, `WITH l AS (SELECT key AS name, value AS labels FROM jsonb_each($1::jsonb)),
		locked AS MATERIALIZED (`+lockNodes(`SELECT name FROM l`)+`)
		UPDATE nodes SET labels = l.labels, generation = nodes.generation + 1 FROM l JOIN locked ON locked.name = l.name
		WHERE nodes.name = l.name`, labels)
	return err
}
