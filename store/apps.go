package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Assign makes app@version the desired release of each named node that is not revoked.
func (s *SQLite) Assign(ctx context.Context, names []string, app, version string, now time.Time) ([]string, api.Event, error) {
	var ev api.Event
	var changed []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		withdrawn, err := releaseState(ctx, tx, app, version)
		if err != nil {
			return err
		}
		if withdrawn.Valid {
			return fmt.Errorf("release %s@%s is withdrawn (reason: %s); deploy another version: %w", app, version, withdrawn.String, ErrConflict)
		}
		// The upsert changes a row only when the version differs, so a repeated deploy is a
		// no-op that does not wake agents. One statement assigns every node, one bumps the
		// generations of those it changed.
		rows, err := tx.QueryContext(ctx, `INSERT INTO assignments (node, app, version, assigned_at)
			SELECT name, ?, ?, ? FROM nodes WHERE name IN (SELECT value FROM json_each(?)) AND status != 'revoked'
			ON CONFLICT (node, app) DO UPDATE SET version = excluded.version, assigned_at = excluded.assigned_at
			WHERE assignments.version != excluded.version
			RETURNING node`, app, version, ts(now), mustJSON(names))
		if err != nil {
			return err
		}
		assigned := map[string]bool{}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			assigned[n] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, name := range names { // in the caller's order, once each
			if assigned[name] {
				changed = append(changed, name)
				delete(assigned, name)
			}
		}
		if len(changed) > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE nodes SET generation = generation + 1
				WHERE name IN (SELECT value FROM json_each(?))`, mustJSON(changed)); err != nil {
				return err
			}
		}
		if len(changed) == 0 {
			return nil
		}
		ev, err = appendEvent(ctx, tx, api.NewEvent(now, api.EventReleaseDeployed, app+"@"+version, api.ReleaseDeployed{Nodes: changed}))
		return err
	})
	return changed, ev, err
}

// SetApps stores an agent's report of its apps and records an event for each app whose
// installed release changed (app.installed) or that newly failed to install (app.failed).
func (s *SQLite) SetApps(ctx context.Context, name string, apps []api.NodeApp, now time.Time) ([]api.Event, error) {
	var evs []api.Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var raw string
		err := tx.QueryRowContext(ctx, `SELECT apps FROM nodes WHERE name = ? AND status != 'revoked'`, name).Scan(&raw)
		if err == sql.ErrNoRows {
			return fmt.Errorf("node %q %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var old []api.NodeApp
		if err := json.Unmarshal([]byte(raw), &old); err != nil {
			return fmt.Errorf("node %s apps: %w", name, err)
		}
		before := map[string]api.NodeApp{}
		for _, a := range old {
			before[a.App] = a
		}
		if apps == nil {
			apps = []api.NodeApp{}
		}
		after := mustJSON(apps)
		if after == raw {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET apps = ? WHERE name = ?`, after, name); err != nil {
			return err
		}
		for _, a := range apps {
			b := before[a.App]
			var e api.Event
			switch {
			case a.Version != "" && (a.Version != b.Version || a.SHA256 != b.SHA256):
				e = api.NewEvent(now, api.EventAppInstalled, name, api.AppInstalled{App: a.App, Version: a.Version, SHA256: a.SHA256, From: b.Version})
			case a.Error != "" && (a.Error != b.Error || a.Pending != b.Pending || a.Retry != b.Retry):
				e = api.NewEvent(now, api.EventAppFailed, name, api.AppFailed{App: a.App, Version: a.Pending, Error: a.Error, Retry: a.Retry})
			default:
				continue
			}
			if e, err = appendEvent(ctx, tx, e); err != nil {
				return err
			}
			evs = append(evs, e)
		}
		return nil
	})
	return evs, err
}
