package store

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
)

// WebhookRecord is a stored webhook. Secret is the HMAC key as the server sealed it; the store
// keeps it as given. Cursor and Failures are filled on reads: the last event its deliveries
// handled, and how many dead letters it has.
type WebhookRecord struct {
	ID        string
	URL       string
	Events    []string
	Secret    []byte
	CreatedAt time.Time
	CreatedBy string
	Cursor    int64
	Failures  int
}

// MaxFailures is how many dead letters a delivery target keeps, the newest: a receiver gone for
// good must not fill the database.
const MaxFailures = 1000

// WebhookQuery selects what ScanWebhook reads, from webhooks w, on either backend; a backend
// adds its WHERE and ORDER BY.
const WebhookQuery = `SELECT w.id, w.url, w.events, w.secret, w.created_at, w.created_by,
	coalesce((SELECT event_id FROM delivery_cursors c WHERE c.target = 'webhook/' || w.id), 0),
	(SELECT count(*) FROM delivery_failures f WHERE f.target = 'webhook/' || w.id)
	FROM webhooks w`

// ScanWebhook reads one row of (id, url, events, secret, created_at, created_by, cursor,
// failures): the globs as a JSON array, created_at as the backend's column holds it (T), which
// when turns into a time.
func ScanWebhook[T any](row interface{ Scan(...any) error }, when func(T) time.Time) (WebhookRecord, error) {
	var w WebhookRecord
	var events string
	var created T
	if err := row.Scan(&w.ID, &w.URL, &events, &w.Secret, &created, &w.CreatedBy, &w.Cursor, &w.Failures); err != nil {
		return w, err
	}
	w.CreatedAt = when(created)
	return w, json.Unmarshal([]byte(events), &w.Events)
}

// ScanWebhooks reads rows as ScanWebhook does.
func ScanWebhooks[T any](rows Rows, when func(T) time.Time) ([]WebhookRecord, error) {
	var out []WebhookRecord
	for rows.Next() {
		w, err := ScanWebhook(rows, when)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// ScanDeliveryFailures reads rows of (target, event_id, event_type, attempts, error,
// failed_at), the time as ScanWebhook reads created_at.
func ScanDeliveryFailures[T any](rows Rows, when func(T) time.Time) ([]api.DeliveryFailure, error) {
	var out []api.DeliveryFailure
	for rows.Next() {
		var f api.DeliveryFailure
		var at T
		if err := rows.Scan(&f.Target, &f.EventID, &f.EventType, &f.Attempts, &f.Error, &at); err != nil {
			return nil, err
		}
		f.FailedAt = when(at)
		out = append(out, f)
	}
	return out, rows.Err()
}

// ScanEventIDs reads rows of one event id each and returns them ascending, each once.
func ScanEventIDs(rows Rows) ([]int64, error) {
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids), rows.Err()
}
