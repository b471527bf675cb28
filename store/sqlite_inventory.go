package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
)

// The inventory's primitives of SQLite's Tx: sites, tokens and nodes.

func (t sqliteTx) Site(name string) (api.Site, error) {
	st, err := scanSite(t.tx.QueryRowContext(t.ctx, `SELECT `+siteCols+` FROM sites s WHERE s.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("site %q %w", name, ErrNotFound)
	}
	st.Nodes = map[string]int{}
	return st, err
}

func (t sqliteTx) InsertSite(site api.Site) error {
	res, err := t.exec(`INSERT INTO sites (name, tier, lat, lon, contact, labels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, site.Name, site.Tier, site.Lat, site.Lon, site.Contact, mustJSON(LabelsOrEmpty(site.Labels)), ts(site.CreatedAt))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("site %q %w", site.Name, ErrExists)
	}
	return nil
}

func (t sqliteTx) SetSiteLabels(name string, labels map[string]string) error {
	res, err := t.exec(`UPDATE sites SET labels = ? WHERE name = ?`, mustJSON(LabelsOrEmpty(labels)), name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("site %q %w", name, ErrNotFound)
	}
	return nil
}

func (t sqliteTx) DeleteSite(name string) error {
	if _, err := t.exec(`DELETE FROM nodes WHERE site = ?`, name); err != nil {
		return err
	}
	res, err := t.exec(`DELETE FROM sites WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("site %q %w", name, ErrNotFound)
	}
	return nil
}

func (t sqliteTx) SiteNodes(site string) ([]string, error) {
	return queryStrings(t.ctx, t.tx, `SELECT name FROM nodes WHERE site = ? AND status != 'revoked' ORDER BY name`, site)
}

func (t sqliteTx) Token(id string) (TokenRecord, error) {
	tok, err := scanToken(t.tx.QueryRowContext(t.ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return tok, fmt.Errorf("token %q %w", id, ErrNotFound)
	}
	return tok, err
}

func (t sqliteTx) Tokens() ([]TokenRecord, error) { return tokens(t.ctx, t.tx) }

func (t sqliteTx) InsertToken(tok TokenRecord) error {
	var site any
	if tok.Site != "" {
		if _, err := t.Site(tok.Site); err != nil {
			return err
		}
		site = tok.Site
	}
	if dup, err := t.exists(`SELECT 1 FROM tokens WHERE id = ?`, tok.ID); err != nil || dup {
		if err == nil {
			err = fmt.Errorf("token %q %w", tok.ID, ErrExists)
		}
		return err
	}
	var exp any
	if tok.ExpiresAt != nil {
		exp = ts(*tok.ExpiresAt)
	}
	_, err := t.exec(`INSERT INTO tokens (id, secret_hash, kind, site, role, uses_left, expires_at, created_at, description)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, tok.ID, tok.SecretHash, tok.Kind, site, tok.Role, tok.UsesLeft, exp, ts(tok.CreatedAt), tok.Description)
	return err
}

func (t sqliteTx) DeleteToken(id string) error {
	res, err := t.exec(`DELETE FROM tokens WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %q %w", id, ErrNotFound)
	}
	return nil
}

func (t sqliteTx) SpendToken(id string) error {
	res, err := t.exec(`UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left IS NOT NULL`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := t.Token(id); err != nil {
			return err
		}
	}
	return nil
}

func (t sqliteTx) Nodes(names []string) (map[string]api.Node, error) {
	if names == nil {
		return nodesWhere(t.ctx, t.tx, "")
	}
	return nodesNamed(t.ctx, t.tx, names)
}

func (t sqliteTx) NodeWithKey(publicKey string) (string, error) {
	var name string
	err := t.tx.QueryRowContext(t.ctx, `SELECT name FROM nodes WHERE public_key = ?`, publicKey).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("node with this public key %w", ErrNotFound)
	}
	return name, err
}

func (t sqliteTx) InsertNode(site string, n NodeRecord, at time.Time) error {
	var status string
	err := t.tx.QueryRowContext(t.ctx, `SELECT status FROM nodes WHERE name = ?`, n.Name).Scan(&status)
	switch {
	case err == nil && status != api.StatusRevoked:
		return fmt.Errorf("node %q %w", n.Name, ErrExists)
	case err == nil:
		if _, err := t.exec(`DELETE FROM nodes WHERE name = ?`, n.Name); err != nil {
			return err
		}
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	_, err = t.exec(`INSERT INTO nodes (name, site, public_key, status, labels, facts, generation, last_seen, enrolled_at)
		VALUES (?, ?, ?, 'up', ?, ?, 1, ?, ?)`, n.Name, site, n.PublicKey, mustJSON(LabelsOrEmpty(n.Labels)), mustJSON(n.Facts), ts(at), ts(at))
	return err
}

func (t sqliteTx) SetNodeStatus(name, status string) error {
	res, err := t.exec(`UPDATE nodes SET status = ? WHERE name = ?`, status, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("node %q %w", name, ErrNotFound)
	}
	return nil
}

// SetLabels writes every node's labels in one statement.
func (t sqliteTx) SetLabels(labels map[string]map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	_, err := t.exec(`UPDATE nodes SET labels = u.value, generation = generation + 1
		FROM (SELECT key AS name, value FROM json_each(?)) AS u WHERE nodes.name = u.name`, mustJSON(labels))
	return err
}

// AppCounts counts the nodes that are not revoked by each app, version and state they report.
func (s *SQLite) AppCounts(ctx context.Context) ([]AppCount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT json_extract(a.value, '$.app'), coalesce(json_extract(a.value, '$.version'), ''),
		coalesce(json_extract(a.value, '$.state'), ''), count(*)
		FROM nodes n, json_each(n.apps) a WHERE n.status != 'revoked' GROUP BY 1, 2, 3`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AppCount
	for rows.Next() {
		var c AppCount
		if err := rows.Scan(&c.App, &c.Version, &c.State, &c.Nodes); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
