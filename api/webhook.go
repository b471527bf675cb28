package api

import "time"

// Event types of notifications: webhooks added and removed, and a delivery (by webhook or by
// email) given up after its last try. Deliveries never carry these last: a failing receiver
// must not feed itself.
const (
	EventWebhookAdded   = "webhook.added"   // WebhookAdded
	EventWebhookRemoved = "webhook.removed" // WebhookRemoved
	EventWebhookRetried = "webhook.retried" // WebhookRetried
	EventDeliveryFailed = "delivery.failed" // DeliveryFailed
)

// Headers of a webhook delivery.
const (
	HeaderSignature = "X-Ferry-Signature-256" // "sha256=" and the hex HMAC-SHA256 of the body
	HeaderEvent     = "X-Ferry-Event"         // the event's type
	HeaderDelivery  = "X-Ferry-Delivery"      // the same on every try of one delivery
)

// WebhookAdd is the body of POST /v1/webhooks. Events is a comma-separated list of globs over
// event types ("rollout.*", "app.state", "*"); Secret, when empty, is made by the server.
type WebhookAdd struct {
	URL    string `json:"url"`
	Events string `json:"events"`
	Secret string `json:"secret,omitempty"`
}

// Webhook is a webhook as operators see it; Secret is present only in the answer that added
// it. Cursor is the id of the last event delivered or given up; Failures counts its dead
// letters.
type Webhook struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	Cursor    int64     `json:"cursor"`
	Failures  int       `json:"failures"`
	Secret    string    `json:"secret,omitempty"`
}

// DeliveryFailure is a dead letter: a delivery of an event given up after its last try.
type DeliveryFailure struct {
	Target    string    `json:"target"` // webhook/ID or email
	EventID   int64     `json:"event_id"`
	EventType string    `json:"event_type"`
	Attempts  int       `json:"attempts"`
	Error     string    `json:"error"`
	FailedAt  time.Time `json:"failed_at"`
}

// WebhookRetry is the body of POST /v1/webhooks/{id}/retry: the dead letter of one event
// (EventID), or all of them (All).
type WebhookRetry struct {
	EventID int64 `json:"event_id,omitempty"`
	All     bool  `json:"all,omitempty"`
}

// WebhookRetried is the payload of webhook.retried, and the answer to a retry: the events
// whose dead letters left the list to be delivered again, oldest first. Its subject is the
// webhook's id.
type WebhookRetried struct {
	Events []int64 `json:"events"`
}

// WebhookAdded is the payload of webhook.added (the secret is never in an event).
type WebhookAdded struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// WebhookRemoved is the payload of webhook.removed.
type WebhookRemoved struct {
	URL string `json:"url"`
}

// DeliveryFailed is the payload of delivery.failed: the event Target never took.
type DeliveryFailed struct {
	Target    string `json:"target"`
	EventID   int64  `json:"event_id"`
	EventType string `json:"event_type"`
	Attempts  int    `json:"attempts"`
	Error     string `json:"error"`
}

// WebhookTarget names a webhook's deliveries in cursors and dead letters; EmailTarget names
// the email's.
func WebhookTarget(id string) string { return "webhook/" + id }

// EmailTarget names the deliveries of email notifications.
const EmailTarget = "email"
