package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// Webhooks and deliveries in PostgreSQL: a webhook's globs as JSON text, its sealed secret
// as bytes; cursors and dead letters keyed by target.

func utc(t time.Time) time.Time { return t.UTC() }

// Webhooks lists the webhooks, oldest first.
func (s *Store) Webhooks(ctx context.Context) ([]store.WebhookRecord, error) {
	rows, err := s.pool.Query(ctx, store.WebhookQuery+` ORDER BY w.created_at, w.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanWebhooks(rows, utc)
}

// DeliveryFailures lists a target's dead letters, newest first.
func (s *Store) DeliveryFailures(ctx context.Context, target string) ([]api.DeliveryFailure, error) {
	rows, err := s.pool.Query(ctx, `SELECT target, event_id, event_type, attempts, error, failed_at
		FROM delivery_failures WHERE target = $1 ORDER BY id DESC LIMIT $2`, target, store.MaxFailures)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanDeliveryFailures(rows, utc)
}

func (u updateTx) InsertWebhook(w store.WebhookRecord) error {
	events, err := json.Marshal(w.Events)
	if err != nil {
		return err
	}
	tag, err := u.tx.Exec(u.ctx, `INSERT INTO webhooks (id, url, events, secret, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO NOTHING`, w.ID, w.URL, string(events), w.Secret, pgTime(w.CreatedAt), w.CreatedBy)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("webhook %q %w", w.ID, store.ErrExists)
	}
	_, err = u.tx.Exec(u.ctx, `INSERT INTO delivery_cursors (target, event_id) VALUES ($1, $2)
		ON CONFLICT (target) DO UPDATE SET event_id = excluded.event_id`, api.WebhookTarget(w.ID), w.Cursor)
	return err
}

func (u updateTx) DeleteWebhook(id string) (store.WebhookRecord, error) {
	w, err := store.ScanWebhook(u.tx.QueryRow(u.ctx, store.WebhookQuery+` WHERE w.id = $1 FOR UPDATE`, id), utc)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fmt.Errorf("webhook %q %w", id, store.ErrNotFound)
	}
	if err != nil {
		return w, err
	}
	target := api.WebhookTarget(id)
	_, err = u.tx.Exec(u.ctx, `WITH w AS (DELETE FROM webhooks WHERE id = $1),
		c AS (DELETE FROM delivery_cursors WHERE target = $2)
		DELETE FROM delivery_failures WHERE target = $2`, id, target)
	return w, err
}

func (u updateTx) StartCursor(target string, eventID int64) (int64, error) {
	if _, err := u.tx.Exec(u.ctx, `INSERT INTO delivery_cursors (target, event_id) VALUES ($1, $2) ON CONFLICT (target) DO NOTHING`, target, eventID); err != nil {
		return 0, err
	}
	var at int64
	err := u.tx.QueryRow(u.ctx, `SELECT event_id FROM delivery_cursors WHERE target = $1`, target).Scan(&at)
	return at, err
}

func (u updateTx) AdvanceCursor(target string, eventID int64) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE delivery_cursors SET event_id = greatest(event_id, $1) WHERE target = $2`, eventID, target)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delivery cursor of %s %w", target, store.ErrNotFound)
	}
	return nil
}

// InsertFailure inserts and trims in one statement. The DELETE's snapshot does not see the row
// the INSERT adds, so it keeps MaxFailures-1 of the older ones.
func (u updateTx) InsertFailure(f api.DeliveryFailure) error {
	_, err := u.tx.Exec(u.ctx, `WITH ins AS (INSERT INTO delivery_failures (target, event_id, event_type, attempts, error, failed_at)
			VALUES ($1, $2, $3, $4, $5, $6))
		DELETE FROM delivery_failures WHERE target = $1 AND id <= (SELECT id FROM delivery_failures WHERE target = $1 ORDER BY id DESC LIMIT 1 OFFSET $7)`,
		f.Target, f.EventID, f.EventType, f.Attempts, f.Error, pgTime(f.FailedAt), store.MaxFailures-1)
	return err
}

func (u updateTx) TakeFailures(target string, eventID int64) ([]int64, error) {
	var one int
	err := u.tx.QueryRow(u.ctx, `SELECT 1 FROM delivery_cursors WHERE target = $1`, target).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("delivery cursor of %s %w", target, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	rows, err := u.tx.Query(u.ctx, `DELETE FROM delivery_failures WHERE target = $1 AND ($2 = 0 OR event_id = $2) RETURNING event_id`, target, eventID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanEventIDs(rows)
}
