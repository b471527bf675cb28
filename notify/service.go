// Package notify tells the world outside Ferry what happened: webhooks, which POST each event
// whose type matches their globs, signed with HMAC-SHA256, and email to sites' contacts when a
// rollout asks them something. The Service keeps the webhooks; the Notifier, run on the leader,
// follows the change feed and delivers, at least once, with retries on the clock and a
// dead-letter list. It is plain Go: the HTTP and SMTP transports are injected (package send).
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"regexp"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/store"
)

// Bounds of webhooks.
const (
	MaxWebhooks     = 64
	MinSecretLen    = 16
	MaxSecretLen    = 256
	generatedSecret = 32 // random bytes, hex-encoded
)

// Sealer seals the webhooks' secrets for the store and opens them to sign (seal.Key).
type Sealer interface {
	Seal(name string, secret []byte) []byte
	Open(name string, sealed []byte) ([]byte, error)
}

// Service keeps the webhooks.
type Service struct {
	store store.Store
	clk   clock.Clock
	key   Sealer
}

// NewService returns the webhooks over st, their secrets sealed with key.
func NewService(st store.Store, clk clock.Clock, key Sealer) *Service {
	return &Service{store: st, clk: clk, key: key}
}

// secretName is what a webhook's secret is sealed for: a sealed value copied to another
// webhook's row does not open there.
func secretName(id string) string { return "webhook/" + id }

var webhookID = regexp.MustCompile(`^[0-9a-f]{12}$`)

// CheckID refuses what cannot be a webhook's id.
func CheckID(id string) error {
	if !webhookID.MatchString(id) {
		return fault.Invalid("invalid webhook id %q: want the 12 hex digits webhook list shows", truncate(id, 40))
	}
	return nil
}

// Add adds a webhook and returns it with its secret: the one given, or one made here. The
// webhook gets the events after its own webhook.added event.
func (s *Service) Add(ctx context.Context, req api.WebhookAdd) (api.Webhook, api.Event, error) {
	u, err := CheckURL(req.URL)
	if err != nil {
		return api.Webhook{}, api.Event{}, err
	}
	globs, err := ParseEvents(req.Events)
	if err != nil {
		return api.Webhook{}, api.Event{}, err
	}
	secret := req.Secret
	switch {
	case secret == "":
		b := make([]byte, generatedSecret)
		rand.Read(b)
		secret = hex.EncodeToString(b)
	case len(secret) < MinSecretLen || len(secret) > MaxSecretLen:
		return api.Webhook{}, api.Event{}, fault.Invalid("a webhook secret of %d bytes: want %d to %d", len(secret), MinSecretLen, MaxSecretLen)
	}
	if have, err := s.store.Webhooks(ctx); err != nil {
		return api.Webhook{}, api.Event{}, err
	} else if len(have) >= MaxWebhooks {
		return api.Webhook{}, api.Event{}, fault.Conflict("%d webhooks already, the most a server delivers to; remove one first", len(have))
	}
	idb := make([]byte, 6)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	rec := store.WebhookRecord{ID: id, URL: u, Events: globs, Secret: s.key.Seal(secretName(id), []byte(secret)),
		CreatedAt: s.clk.Now().UTC(), CreatedBy: store.ActorFrom(ctx).ID}
	var ev api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if ev, err = store.AppendOne(tx, api.NewEvent(rec.CreatedAt, api.EventWebhookAdded, id, api.WebhookAdded{URL: u, Events: globs})); err != nil {
			return err
		}
		rec.Cursor = ev.ID
		return tx.InsertWebhook(rec)
	})
	if errors.Is(err, store.ErrExists) {
		err = fault.Conflict("webhook id %s is taken; add it again", id)
	}
	if err != nil {
		return api.Webhook{}, api.Event{}, err
	}
	w := webhookJSON(rec)
	w.Secret = secret
	return w, ev, nil
}

// List lists the webhooks, oldest first, with their cursors and dead-letter counts.
func (s *Service) List(ctx context.Context) ([]api.Webhook, error) {
	recs, err := s.store.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Webhook, 0, len(recs))
	for _, r := range recs {
		out = append(out, webhookJSON(r))
	}
	return out, nil
}

// Remove removes a webhook with its cursor and dead letters; deliveries to it stop.
func (s *Service) Remove(ctx context.Context, id string) (api.Event, error) {
	if err := CheckID(id); err != nil {
		return api.Event{}, err
	}
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		w, err := tx.DeleteWebhook(id)
		if errors.Is(err, store.ErrNotFound) {
			return fault.NotFound("no webhook %s; see ferry webhook list", id)
		}
		if err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(s.clk.Now().UTC(), api.EventWebhookRemoved, id, api.WebhookRemoved{URL: w.URL}))
		return err
	})
	return ev, err
}

// Retry takes a webhook's dead letters (of one event, or all) off the list and records a
// webhook.retried event naming their events, in one transaction: the webhook's follower meets
// that event in the feed and delivers them again, in order, each with its tries; one that fails
// them all is a dead letter again. A server killed before that goes on from its cursor, which
// is before the event, and delivers them then.
func (s *Service) Retry(ctx context.Context, id string, req api.WebhookRetry) (api.WebhookRetried, api.Event, error) {
	if err := CheckID(id); err != nil {
		return api.WebhookRetried{}, api.Event{}, err
	}
	if req.All == (req.EventID != 0) || req.EventID < 0 {
		return api.WebhookRetried{}, api.Event{}, fault.Invalid("retry the dead letter of one event (its positive id) or all of them, not both or neither")
	}
	var out api.WebhookRetried
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		ids, err := tx.TakeFailures(api.WebhookTarget(id), req.EventID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fault.NotFound("no webhook %s; see ferry webhook list", id)
		case err != nil:
			return err
		case len(ids) == 0 && req.All:
			return fault.Conflict("webhook %s has no dead letters to retry", id)
		case len(ids) == 0:
			return fault.NotFound("webhook %s has no dead letter of event %d; see ferry webhook failures %s", id, req.EventID, id)
		}
		out.Events = ids
		ev, err = store.AppendOne(tx, api.NewEvent(s.clk.Now().UTC(), api.EventWebhookRetried, id, out))
		return err
	})
	return out, ev, err
}

// Failures lists a webhook's dead letters, newest first.
func (s *Service) Failures(ctx context.Context, id string) ([]api.DeliveryFailure, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	hooks, err := s.store.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range hooks {
		if w.ID == id {
			fs, err := s.store.DeliveryFailures(ctx, api.WebhookTarget(id))
			if fs == nil {
				fs = []api.DeliveryFailure{}
			}
			return fs, err
		}
	}
	return nil, fault.NotFound("no webhook %s; see ferry webhook list", id)
}

func webhookJSON(r store.WebhookRecord) api.Webhook {
	return api.Webhook{ID: r.ID, URL: r.URL, Events: r.Events, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, Cursor: r.Cursor, Failures: r.Failures}
}
