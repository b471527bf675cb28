package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// Request is one try of a webhook delivery: the transport POSTs Body to URL with Header.
type Request struct {
	URL    string
	Body   []byte
	Header map[string]string
}

// Sender is the webhook transport. Send returns nil only when the receiver took the delivery
// (a 2xx answer); it bounds the time a try takes and what it reads of the answer.
type Sender interface {
	Send(ctx context.Context, r Request) error
}

// Mail is one plain-text message to send.
type Mail struct {
	From    string
	To      []string
	Subject string
	Body    string
	Date    time.Time
	ID      string // unique per delivery, the same on every try: the Message-ID's left part
}

// Mailer is the email transport.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// Config configures a Notifier.
type Config struct {
	Store  store.Store
	Clock  clock.Clock
	Log    *slog.Logger
	Key    Sealer // opens the webhooks' secrets
	Sender Sender
	// Mailer and From, when Mailer is set, send rollouts' requests to sites' contacts.
	Mailer Mailer
	From   string
	// MaxAttempts is how many tries a delivery gets before it is a dead letter (default 8);
	// Backoff the wait after the first failed try (default 1s), doubling after each up to
	// MaxBackoff (default 5m).
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration
}

// Notifier delivers events to the webhooks and by email. Each target (a webhook, the email)
// follows the change feed from its cursor on its own, in event order, so a slow or failing
// receiver holds up only itself; what a target holds in memory is one feed batch. After a
// delivery's outcome (taken, or given up and put in the dead-letter list) its cursor moves past
// the event in the same transaction that records the outcome, so a server killed at any point
// resumes after the last recorded outcome: every matching event is delivered at least once, and
// again only when the server died between a receiver taking it and that commit. Run it on the
// leader only.
type Notifier struct {
	cfg Config
	log *slog.Logger
}

// New returns a notifier.
func New(cfg Config) *Notifier {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Notifier{cfg: cfg, log: cfg.Log.With("component", "notify")}
}

// Own reports whether an event is one the notifier writes itself: never delivered, so that a
// failing receiver does not feed its own failures back to itself.
func Own(e api.Event) bool { return e.Type == api.EventDeliveryFailed }

// Run delivers until ctx ends (the lead is lost or the server stops), starting a follower for
// each webhook added and stopping the follower of each removed.
func (n *Notifier) Run(ctx context.Context) {
	ctx = store.WithActor(ctx, store.System)
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]context.CancelFunc{}
	defer func() {
		for _, stop := range running {
			stop()
		}
	}()
	start := func(target string, run func(context.Context)) {
		c, stop := context.WithCancel(ctx)
		running[target] = stop
		wg.Add(1)
		go func() { defer wg.Done(); run(c) }()
	}
	since, err := n.cfg.Store.LastEventID(ctx)
	for err != nil {
		if !n.retry(ctx, "read the event log", err) {
			return
		}
		since, err = n.cfg.Store.LastEventID(ctx)
	}
	if n.cfg.Mailer != nil {
		start(api.EmailTarget, func(ctx context.Context) { n.follow(ctx, api.EmailTarget, since, n.emailDelivery()) })
	}
	feed := store.Watch(n.cfg.Store, since)
	for ctx.Err() == nil {
		// The webhooks are read after the feed's start: one added in between is both listed and
		// announced, and starting it twice is avoided by the map.
		hooks, err := n.cfg.Store.Webhooks(ctx)
		if err != nil {
			if !n.retry(ctx, "list webhooks", err) {
				return
			}
			continue
		}
		listed := map[string]bool{}
		for _, w := range hooks {
			target := api.WebhookTarget(w.ID)
			listed[target] = true
			if running[target] == nil {
				d, err := n.webhookDelivery(w)
				if err != nil {
					n.log.Error("webhook not delivered to: its secret does not open", "webhook", w.ID, "err", err)
					continue
				}
				start(target, func(ctx context.Context) { n.follow(ctx, target, w.Cursor, d) })
			}
		}
		for target, stop := range running {
			if target != api.EmailTarget && !listed[target] {
				stop()
				delete(running, target)
			}
		}
		// Wait for a webhook to come or go.
		for changed := false; !changed; {
			evs, ok := n.next(ctx, feed)
			if !ok {
				return
			}
			for _, e := range evs {
				changed = changed || e.Type == api.EventWebhookAdded || e.Type == api.EventWebhookRemoved
			}
		}
	}
}

// retry logs a failure and waits a second; false when ctx ended.
func (n *Notifier) retry(ctx context.Context, what string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	n.log.Warn(what+"; retrying", "err", err)
	return clock.Sleep(ctx, n.cfg.Clock, time.Second)
}

// skipRecordEvery is how far a target's cursor may lag behind the events it skipped.
const skipRecordEvery = 1000

// next returns the feed's next events, retrying while the store fails; false when ctx ended.
func (n *Notifier) next(ctx context.Context, feed *store.Feed) ([]api.Event, bool) {
	for {
		evs, err := feed.Next(ctx)
		if err == nil {
			return evs, true
		}
		if !n.retry(ctx, "follow the event log", err) {
			return nil, false
		}
	}
}

// delivery is what a target delivers: wants picks the events, send makes one try of one.
type delivery struct {
	wants func(api.Event) bool
	send  func(ctx context.Context, e api.Event) error
}

// follow delivers the events after cursor that d wants to target, in order, until ctx ends or
// the target is removed.
func (n *Notifier) follow(ctx context.Context, target string, cursor int64, d delivery) {
	log := n.log.With("target", target)
	if target == api.EmailTarget {
		// The email starts where it stopped; the first time, from now.
		for {
			var at int64
			err := n.cfg.Store.Update(ctx, func(tx store.Tx) (err error) { at, err = tx.StartCursor(target, cursor); return err })
			if err == nil {
				cursor = at
				break
			}
			if !n.retry(ctx, "start the email's cursor", err) {
				return
			}
		}
	}
	feed := store.Watch(n.cfg.Store, cursor)
	for {
		evs, ok := n.next(ctx, feed)
		if !ok {
			return
		}
		for _, e := range evs {
			wanted := !Own(e) && d.wants(e)
			if ids := retried(target, e); ids != nil {
				if !n.redeliver(ctx, target, d, ids) {
					return
				}
				// Past the retry at once, wanted or not: a restart must not deliver them again.
				if !wanted {
					if !n.record(ctx, target, e, 0, nil) {
						return
					}
					cursor = e.ID
				}
			}
			if !wanted {
				continue
			}
			tries, err := n.attempt(ctx, d, e)
			if ctx.Err() != nil {
				return // not recorded: the next leader delivers it again
			}
			if err != nil {
				log.Warn("delivery given up: dead letter", "event", e.ID, "type", e.Type, "attempts", tries, "err", err)
			}
			if !n.record(ctx, target, e, tries, err) {
				return
			}
			cursor = e.ID
		}
		// Past the events this target does not want, now and then: a restart reads them again
		// and skips them again, so recording after every batch would only cost a write per
		// target for each write anyone makes.
		if last := evs[len(evs)-1].ID; last-cursor >= skipRecordEvery {
			if !n.record(ctx, target, api.Event{ID: last}, 0, nil) {
				return
			}
			cursor = last
		}
	}
}

// retried returns the events a webhook.retried event names, when it is target's; nil otherwise.
func retried(target string, e api.Event) []int64 {
	var p api.WebhookRetried
	if e.Type != api.EventWebhookRetried || api.WebhookTarget(e.Subject) != target || e.Decode(&p) != nil {
		return nil
	}
	return p.Events
}

// redeliver delivers the events ids again, oldest first, each with its tries; one that fails
// them all is a dead letter again. Those in the dead-letter list already are skipped: the retry
// took them all off it, so a server killed midway through has put them back itself. It returns
// false when ctx ended or the target is gone.
func (n *Notifier) redeliver(ctx context.Context, target string, d delivery, ids []int64) bool {
	dead, err := n.cfg.Store.DeliveryFailures(ctx, target)
	for err != nil {
		if !n.retry(ctx, "list dead letters", err) {
			return false
		}
		dead, err = n.cfg.Store.DeliveryFailures(ctx, target)
	}
	again := map[int64]bool{}
	for _, f := range dead {
		again[f.EventID] = true
	}
	for _, id := range ids {
		if again[id] {
			continue
		}
		e, ok := n.event(ctx, id)
		if !ok {
			return false
		}
		if e.ID != id {
			continue
		}
		tries, err := n.attempt(ctx, d, e)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			n.log.Warn("retried delivery given up: dead letter again", "target", target, "event", id, "attempts", tries, "err", err)
			if !n.record(ctx, target, e, tries, err) {
				return false
			}
		}
	}
	return true
}

// event reads one event of the log, retrying while the store fails (the zero event when the log
// has none of that id); false when ctx ended.
func (n *Notifier) event(ctx context.Context, id int64) (api.Event, bool) {
	for {
		evs, err := n.cfg.Store.Events(ctx, id-1, 1)
		if err == nil && len(evs) == 1 {
			return evs[0], true
		}
		if err == nil {
			return api.Event{}, true // not in the log: nothing to deliver
		}
		if !n.retry(ctx, "read a retried event", err) {
			return api.Event{}, false
		}
	}
}

// attempt tries a delivery until it is taken or has had MaxAttempts tries, waiting on the clock
// between tries; it returns the tries made and the last failure.
func (n *Notifier) attempt(ctx context.Context, d delivery, e api.Event) (int, error) {
	wait := n.cfg.Backoff
	for try := 1; ; try++ {
		err := d.send(ctx, e)
		if err == nil || try >= n.cfg.MaxAttempts || ctx.Err() != nil {
			return try, err
		}
		n.log.Info("delivery failed; retrying", "event", e.ID, "type", e.Type, "try", try, "retry_in", wait, "err", err)
		if !clock.Sleep(ctx, n.cfg.Clock, wait) {
			return try, ctx.Err()
		}
		wait = min(2*wait, n.cfg.MaxBackoff)
	}
}

// record moves target's cursor to e and, when failed is set, puts e in its dead-letter list
// with a delivery.failed event, in one transaction, retrying while the store fails. It returns
// false when ctx ended or the target is gone.
func (n *Notifier) record(ctx context.Context, target string, e api.Event, tries int, failed error) bool {
	for {
		err := n.cfg.Store.Update(ctx, func(tx store.Tx) error {
			if err := tx.AdvanceCursor(target, e.ID); err != nil {
				return err
			}
			if failed == nil {
				return nil
			}
			msg := truncate(failed.Error(), 500)
			now := n.cfg.Clock.Now().UTC()
			if err := tx.InsertFailure(api.DeliveryFailure{Target: target, EventID: e.ID, EventType: e.Type, Attempts: tries, Error: msg, FailedAt: now}); err != nil {
				return err
			}
			_, err := tx.AppendEvents(api.NewEvent(now, api.EventDeliveryFailed, target,
				api.DeliveryFailed{Target: target, EventID: e.ID, EventType: e.Type, Attempts: tries, Error: msg}))
			return err
		})
		switch {
		case err == nil:
			return true
		case errors.Is(err, store.ErrNotFound):
			return false // the webhook was removed
		case !n.retry(ctx, "record a delivery", err):
			return false
		}
	}
}

// webhookDelivery posts the events w's globs match, as JSON, signed with its secret.
func (n *Notifier) webhookDelivery(w store.WebhookRecord) (delivery, error) {
	secret, err := n.cfg.Key.Open(secretName(w.ID), w.Secret)
	if err != nil {
		return delivery{}, err
	}
	return delivery{
		wants: func(e api.Event) bool { return Matches(w.Events, e.Type) },
		send: func(ctx context.Context, e api.Event) error {
			body, err := json.Marshal(e)
			if err != nil {
				return err
			}
			return n.cfg.Sender.Send(ctx, Request{URL: w.URL, Body: body, Header: map[string]string{
				"Content-Type":      "application/json",
				api.HeaderSignature: Sign(secret, body),
				api.HeaderEvent:     e.Type,
				api.HeaderDelivery:  DeliveryID(w.ID, e.ID),
			}})
		},
	}, nil
}

// Sign returns the X-Ferry-Signature-256 value of body under secret: "sha256=" and the hex
// HMAC-SHA256. Receivers compute the same over the raw body and compare in constant time.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// DeliveryID names the delivery of one event to one webhook, the same on every try and after
// a restart: receivers drop what they have seen by it.
func DeliveryID(webhook string, event int64) string {
	return webhook + "-" + strconv.FormatInt(event, 10)
}

// emailDelivery mails each rollout.notify event that names contacts to them.
func (n *Notifier) emailDelivery() delivery {
	return delivery{
		wants: func(e api.Event) bool {
			var p api.RolloutNotify
			return e.Type == api.EventRolloutNotify && e.Decode(&p) == nil && len(p.Contacts) > 0
		},
		send: func(ctx context.Context, e api.Event) error {
			var p api.RolloutNotify
			if err := e.Decode(&p); err != nil {
				return err
			}
			release := ""
			if r, err := n.cfg.Store.Rollout(ctx, p.ID); err == nil {
				release = r.App + "@" + r.Version
			} else if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("read rollout %d: %w", p.ID, err)
			}
			subject, body := Compose(p, release)
			return n.cfg.Mailer.Send(ctx, Mail{From: n.cfg.From, To: p.Contacts, Subject: subject, Body: body,
				Date: e.Time, ID: DeliveryID("email", e.ID)})
		},
	}
}
