package store

import "time"

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
