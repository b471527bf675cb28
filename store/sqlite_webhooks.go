package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/api"
)

// Webhooks and deliveries in SQLite: a webhook's globs as a JSON array, its sealed secret as a
// blob; cursors and dead letters keyed by target.

// Webhooks lists the webhooks, oldest first.
func (s *SQLite) Webhooks(ctx context.Context) ([]WebhookRecord, error) {
	rows, err := s.r.QueryContext(ctx, WebhookQuery+` ORDER BY w.created_at, w.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanWebhooks(rows, parseTS)
}

// DeliveryFailures lists a target's dead letters, newest first.
func (s *SQLite) DeliveryFailures(ctx context.Context, target string) ([]api.DeliveryFailure, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT target, event_id, event_type, attempts, error, failed_at
		FROM delivery_failures WHERE target = ? ORDER BY id DESC LIMIT ?`, target, MaxFailures)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanDeliveryFailures(rows, parseTS)
}

func (t sqliteTx) InsertWebhook(w WebhookRecord) error {
	if ok, err := t.exists(`SELECT 1 FROM webhooks WHERE id = ?`, w.ID); err != nil || ok {
		if ok {
			err = fmt.Errorf("webhook %q %w", w.ID, ErrExists)
		}
		return err
	}
	if _, err := t.exec(`INSERT INTO webhooks (id, url, events, secret, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)`,
		w.ID, w.URL, mustJSON(w.Events), w.Secret, ts(w.CreatedAt), w.CreatedBy); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO delivery_cursors (target, event_id) VALUES (?, ?)
		ON CONFLICT (target) DO UPDATE SET event_id = excluded.event_id`, api.WebhookTarget(w.ID), w.Cursor)
	return err
}

func (t sqliteTx) DeleteWebhook(id string) (WebhookRecord, error) {
	w, err := ScanWebhook(t.tx.QueryRowContext(t.ctx, WebhookQuery+` WHERE w.id = ?`, id), parseTS)
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("webhook %q %w", id, ErrNotFound)
	}
	if err != nil {
		return w, err
	}
	if _, err := t.exec(`DELETE FROM webhooks WHERE id = ?`, id); err != nil {
		return w, err
	}
	if _, err := t.exec(`DELETE FROM delivery_cursors WHERE target = ?`, api.WebhookTarget(id)); err != nil {
		return w, err
	}
	_, err = t.exec(`DELETE FROM delivery_failures WHERE target = ?`, api.WebhookTarget(id))
	return w, err
}

func (t sqliteTx) StartCursor(target string, eventID int64) (int64, error) {
	if _, err := t.exec(`INSERT INTO delivery_cursors (target, event_id) VALUES (?, ?) ON CONFLICT (target) DO NOTHING`, target, eventID); err != nil {
		return 0, err
	}
	var at int64
	err := t.tx.QueryRowContext(t.ctx, `SELECT event_id FROM delivery_cursors WHERE target = ?`, target).Scan(&at)
	return at, err
}

func (t sqliteTx) AdvanceCursor(target string, eventID int64) error {
	res, err := t.exec(`UPDATE delivery_cursors SET event_id = max(event_id, ?) WHERE target = ?`, eventID, target)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delivery cursor of %s %w", target, ErrNotFound)
	}
	return nil
}

func (t sqliteTx) InsertFailure(f api.DeliveryFailure) error {
	if _, err := t.exec(`INSERT INTO delivery_failures (target, event_id, event_type, attempts, error, failed_at) VALUES (?, ?, ?, ?, ?, ?)`,
		f.Target, f.EventID, f.EventType, f.Attempts, f.Error, ts(f.FailedAt)); err != nil {
		return err
	}
	_, err := t.exec(`DELETE FROM delivery_failures WHERE target = ? AND id <= (SELECT id FROM delivery_failures WHERE target = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		f.Target, f.Target, MaxFailures)
	return err
}

func (t sqliteTx) TakeFailures(target string, eventID int64) ([]int64, error) {
	if ok, err := t.exists(`SELECT 1 FROM delivery_cursors WHERE target = ?`, target); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("delivery cursor of %s %w", target, ErrNotFound)
		}
		return nil, err
	}
	rows, err := t.tx.QueryContext(t.ctx, `DELETE FROM delivery_failures WHERE target = ? AND (? = 0 OR event_id = ?) RETURNING event_id`,
		target, eventID, eventID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanEventIDs(rows)
}
