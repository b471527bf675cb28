package notify_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/notify"
	"github.com/ferryhq/ferry/notify/send"
	"github.com/ferryhq/ferry/seal"
	"github.com/ferryhq/ferry/store"
)

var t0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

// rig is a real SQLite store on a fake clock, with the notifier run over it as the leader runs
// it, through the real HTTP transport.
type rig struct {
	t    *testing.T
	ctx  context.Context
	file string
	st   *store.SQLite
	clk  *clock.Fake
	key  *seal.Key
	svc  *notify.Service
	stop func()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	key, err := seal.NewKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ctx: ctx, file: filepath.Join(t.TempDir(), "ferry.db"), clk: clock.NewFake(t0), key: key}
	r.open()
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
		r.st.Close()
	})
	return r
}

func (r *rig) open() {
	r.t.Helper()
	st, err := store.OpenSQLite(r.ctx, r.file)
	if err != nil {
		r.t.Fatal(err)
	}
	r.st = st
	r.svc = notify.NewService(st, r.clk, r.key)
}

// start runs a notifier until stop; mailer may be nil.
func (r *rig) start(attempts int, mailer notify.Mailer) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(r.ctx)
	n := notify.New(notify.Config{Store: r.st, Clock: r.clk, Log: quiet(), Key: r.key, Sender: send.NewHTTP(5 * time.Second),
		MaxAttempts: attempts, Mailer: mailer, From: "ferry@example.org"})
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	r.stop = func() { cancel(); <-done; r.stop = nil }
}

// restart closes the store, as a killed server leaves it, and starts it and the notifier
// again (stopping the notifier first when it runs).
func (r *rig) restart(attempts int) {
	if r.stop != nil {
		r.stop()
	}
	r.st.Close()
	r.open()
	r.start(attempts, nil)
}

func (r *rig) event(typ, subject string) api.Event {
	r.t.Helper()
	e, err := store.AppendEvent(store.WithActor(r.ctx, store.Actor{ID: "token:test"}), r.st, api.NewEvent(r.clk.Now(), typ, subject, nil))
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

// webhook adds a webhook to rc's URL and path, and gives rc its secret.
func (r *rig) webhook(rc *receiver, path, events string) api.Webhook {
	r.t.Helper()
	w, _, err := r.svc.Add(store.WithActor(r.ctx, store.Actor{ID: "token:admin"}), api.WebhookAdd{URL: rc.URL + path, Events: events})
	if err != nil {
		r.t.Fatal(err)
	}
	rc.secret.Store(w.Secret)
	return w
}

// delivery is what a receiver got, checked.
type delivery struct {
	id, typ string
	event   api.Event
	at      time.Time
}

// receiver is a real HTTP server on loopback that checks each delivery's signature and answers
// with the status answer gives for the n-th try (from 1) of it.
type receiver struct {
	*httptest.Server
	secret atomic.Value // string: of the webhook last added for it (rig.webhook)
	mu     sync.Mutex
	tries  map[string]int
	got    chan delivery
}

func newReceiver(t *testing.T, answer func(d delivery, try int) int) *receiver {
	rc := &receiver{tries: map[string]int{}, got: make(chan delivery, 100)}
	rc.secret.Store("")
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if want := notify.Sign([]byte(rc.secret.Load().(string)), body); !hmac.Equal([]byte(req.Header.Get(api.HeaderSignature)), []byte(want)) {
			t.Errorf("delivery %s: signature %q, want %q", req.Header.Get(api.HeaderDelivery), req.Header.Get(api.HeaderSignature), want)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var d delivery
		if err := json.Unmarshal(body, &d.event); err != nil || req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("delivery body %q: %v", body, err)
		}
		d.id, d.typ = req.Header.Get(api.HeaderDelivery), req.Header.Get(api.HeaderEvent)
		if d.typ != d.event.Type {
			t.Errorf("X-Ferry-Event %q for an event of type %q", d.typ, d.event.Type)
		}
		rc.mu.Lock()
		rc.tries[d.id]++
		try := rc.tries[d.id]
		rc.mu.Unlock()
		code := answer(d, try)
		w.WriteHeader(code)
		if code/100 == 2 {
			rc.got <- d
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) next(t *testing.T, ctx context.Context) delivery {
	t.Helper()
	select {
	case d := <-rc.got:
		return d
	case <-ctx.Done():
		t.Fatal("no delivery came")
		return delivery{}
	}
}

func (rc *receiver) triesOf(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.tries[id]
}

// A receiver that fails the first two tries gets the third, 1s and then 2s later on the clock;
// events the webhook's globs do not match are not sent; each delivery is signed with the
// webhook's secret and keeps its id across tries; the cursor moves past what was taken.
func TestWebhookRetriedWithBackoffOnTheClock(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, func(d delivery, try int) int {
		if d.typ == "rollout.started" && try <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	w := r.webhook(rc, "/hook", "rollout.*,app.state")
	r.start(8, nil)
	r.event("node.up", "n1")
	started := r.event("rollout.started", "rollout/1")
	state := r.event("app.state", "n1")

	var waits []time.Duration
	for range 2 {
		if err := r.clk.WaitPending(r.ctx, 1); err != nil {
			t.Fatal(err)
		}
		before := r.clk.Now()
		// Not a moment early.
		if err := r.clk.WaitDue(r.ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		step := time.Second
		if len(waits) == 1 {
			step = 2 * time.Second
		}
		r.clk.Advance(step - time.Millisecond)
		if r.clk.Pending() != 1 {
			t.Fatalf("the retry after %s came before its backoff", waits)
		}
		r.clk.Advance(time.Millisecond)
		waits = append(waits, r.clk.Now().Sub(before))
	}
	d := rc.next(t, r.ctx)
	if d.event.ID != started.ID || d.id != notify.DeliveryID(w.ID, started.ID) || rc.triesOf(d.id) != 3 || d.event.Actor != "token:test" {
		t.Fatalf("first delivery %+v after %d tries; want rollout.started after 3", d, rc.triesOf(d.id))
	}
	if d := rc.next(t, r.ctx); d.event.ID != state.ID || d.typ != "app.state" {
		t.Fatalf("second delivery %+v, want app.state", d)
	}
	waitCursor(t, r, w.ID, state.ID)
	if fs, _ := r.st.DeliveryFailures(r.ctx, api.WebhookTarget(w.ID)); len(fs) != 0 {
		t.Fatalf("dead letters: %+v", fs)
	}
	select {
	case d := <-rc.got:
		t.Fatalf("unexpected delivery %+v", d)
	default:
	}
}

// waitCursor waits until the webhook's cursor reaches id.
func waitCursor(t *testing.T, r *rig, webhook string, id int64) store.WebhookRecord {
	t.Helper()
	for {
		changed := r.st.Changed() // before the read, so a commit after it is not missed
		hooks, err := r.st.Webhooks(r.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range hooks {
			if w.ID == webhook && w.Cursor >= id {
				return w
			}
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			t.Fatalf("cursor of %s never reached %d: %+v", webhook, id, hooks)
		}
	}
}

// A receiver that always fails: after the last try the delivery is a dead letter, recorded with
// a delivery.failed event by the system (which no webhook is sent, not even one for '*'), and
// the webhook moves on to the next event.
func TestWebhookDeadLetter(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, func(d delivery, try int) int {
		if d.typ == "release.pushed" {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	w := r.webhook(rc, "", "*")
	r.start(3, nil)
	pushed := r.event("release.pushed", "hello@1.0.0")
	for range 2 {
		if err := r.clk.WaitPending(r.ctx, 1); err != nil {
			t.Fatal(err)
		}
		r.clk.Advance(time.Minute)
	}
	after := r.event("site.added", "ams")
	if d := rc.next(t, r.ctx); d.event.ID != after.ID {
		t.Fatalf("delivery %+v, want the event after the dead letter", d)
	}
	rec := waitCursor(t, r, w.ID, after.ID)
	if rec.Failures != 1 {
		t.Fatalf("webhook %+v: want one dead letter", rec)
	}
	fs, err := r.svc.Failures(r.ctx, w.ID)
	if err != nil || len(fs) != 1 || fs[0].EventID != pushed.ID || fs[0].Attempts != 3 || fs[0].Error != "the receiver answered 500 Internal Server Error" {
		t.Fatalf("failures %+v, %v", fs, err)
	}
	evs, _ := r.st.Events(r.ctx, pushed.ID, 100)
	var failed []api.Event
	for _, e := range evs {
		if e.Type == api.EventDeliveryFailed {
			failed = append(failed, e)
		}
	}
	if len(failed) != 1 || failed[0].Actor != store.System.ID || failed[0].Subject != api.WebhookTarget(w.ID) {
		t.Fatalf("delivery.failed events %+v", failed)
	}
	if n := rc.triesOf(notify.DeliveryID(w.ID, failed[0].ID)); n != 0 {
		t.Fatalf("the delivery.failed event was sent to the webhook %d times", n)
	}
}

// A server killed with deliveries pending resumes them: what a receiver took and the store
// recorded is not sent again; what was in flight is sent again with the same delivery id (at
// least once); nothing is lost.
func TestDeliveriesResumeAfterRestart(t *testing.T) {
	r := newRig(t)
	hold := make(chan struct{})
	inFlight := make(chan struct{}, 1)
	var mu sync.Mutex
	holding := true
	rc := newReceiver(t, func(d delivery, try int) int {
		mu.Lock()
		h := holding
		mu.Unlock()
		if h && d.event.Subject == "second" {
			inFlight <- struct{}{}
			<-hold // the server dies while this answer is awaited
			return http.StatusOK
		}
		return http.StatusOK
	})
	w := r.webhook(rc, "", "app.*")
	r.start(8, nil)
	first := r.event("app.state", "first")
	if d := rc.next(t, r.ctx); d.event.ID != first.ID {
		t.Fatalf("delivery %+v", d)
	}
	waitCursor(t, r, w.ID, first.ID)
	second := r.event("app.state", "second")
	third := r.event("app.installed", "third")
	<-inFlight
	mu.Lock()
	holding = false
	mu.Unlock()
	r.stop() // killed while the receiver has not answered
	close(hold)
	r.restart(8)
	seen := map[int64]int{}
	for seen[third.ID] == 0 {
		d := rc.next(t, r.ctx)
		seen[d.event.ID]++
		if d.id != notify.DeliveryID(w.ID, d.event.ID) {
			t.Fatalf("delivery id %q", d.id)
		}
	}
	waitCursor(t, r, w.ID, third.ID)
	if seen[first.ID] != 0 || seen[second.ID] < 1 {
		t.Fatalf("after the restart: %v; want second (again) and third, not first", seen)
	}
	if n := rc.triesOf(notify.DeliveryID(w.ID, first.ID)); n != 1 {
		t.Fatalf("first sent %d times", n)
	}
}

// Removing a webhook stops its deliveries; one added later gets only what comes after it.
func TestWebhookRemovedStops(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, func(d delivery, try int) int { return http.StatusOK })
	r.start(8, nil)
	w := r.webhook(rc, "", "site.*")
	a := r.event("site.added", "a")
	if d := rc.next(t, r.ctx); d.event.ID != a.ID {
		t.Fatalf("delivery %+v", d)
	}
	if _, err := r.svc.Remove(r.ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	r.event("site.added", "b")
	w2 := r.webhook(rc, "", "site.*")
	c := r.event("site.added", "c")
	if d := rc.next(t, r.ctx); d.event.ID != c.ID || d.id != notify.DeliveryID(w2.ID, c.ID) {
		t.Fatalf("delivery %+v; want only c, to the new webhook", d)
	}
}

// Dead letters retried: they leave the list and are delivered again, oldest first, by the
// webhook's follower; one the receiver still refuses is a dead letter again. The retry is an
// event of the operator who asked for it.
func TestWebhookRetryDeadLetters(t *testing.T) {
	r := newRig(t)
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, func(d delivery, try int) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	w := r.webhook(rc, "/hook", "release.*")
	r.start(1, nil)
	one, two := r.event("release.pushed", "hello@1.0.0"), r.event("release.pushed", "hello@1.1.0")
	waitCursor(t, r, w.ID, two.ID)
	dead := func() []int64 {
		t.Helper()
		fs, err := r.svc.Failures(r.ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, f := range fs {
			ids = append(ids, f.EventID)
		}
		return ids
	}
	if got := dead(); len(got) != 2 {
		t.Fatalf("dead letters %v, want 2", got)
	}
	op := store.WithActor(r.ctx, store.Actor{ID: "token:op"})

	// Retried while the receiver still fails: a dead letter again.
	res, ev, err := r.svc.Retry(op, w.ID, api.WebhookRetry{EventID: one.ID})
	if err != nil || len(res.Events) != 1 || res.Events[0] != one.ID || ev.Type != api.EventWebhookRetried || ev.Actor != "token:op" || ev.Subject != w.ID {
		t.Fatalf("retry of %d: %+v, %+v, %v", one.ID, res, ev, err)
	}
	waitCursor(t, r, w.ID, ev.ID)
	if got := dead(); len(got) != 2 || got[0] != one.ID || got[1] != two.ID {
		t.Fatalf("dead letters after a failed retry %v, want %d (newest) and %d", got, one.ID, two.ID)
	}

	// Retried once the receiver takes them: delivered in order, the list empties.
	failing.Store(false)
	res, ev, err = r.svc.Retry(op, w.ID, api.WebhookRetry{All: true})
	if err != nil || len(res.Events) != 2 || res.Events[0] != one.ID || res.Events[1] != two.ID {
		t.Fatalf("retry all: %+v, %v", res, err)
	}
	for _, want := range []int64{one.ID, two.ID} {
		if d := rc.next(t, r.ctx); d.event.ID != want || d.id != notify.DeliveryID(w.ID, want) {
			t.Fatalf("delivery %+v, want event %d", d, want)
		}
	}
	waitCursor(t, r, w.ID, ev.ID)
	if got := dead(); len(got) != 0 {
		t.Fatalf("dead letters after a retry the receiver took: %v", got)
	}

	for _, tt := range []struct {
		id   string
		req  api.WebhookRetry
		kind error
	}{
		{w.ID, api.WebhookRetry{All: true}, fault.ErrConflict},
		{w.ID, api.WebhookRetry{EventID: one.ID}, fault.ErrNotFound},
		{w.ID, api.WebhookRetry{}, fault.ErrInvalid},
		{w.ID, api.WebhookRetry{EventID: one.ID, All: true}, fault.ErrInvalid},
		{"0123456789ab", api.WebhookRetry{All: true}, fault.ErrNotFound},
		{"nope", api.WebhookRetry{All: true}, fault.ErrInvalid},
	} {
		if _, _, err := r.svc.Retry(op, tt.id, tt.req); !errors.Is(err, tt.kind) {
			t.Errorf("retry %s %+v: %v, want %v", tt.id, tt.req, err, tt.kind)
		}
	}
}
