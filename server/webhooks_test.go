package server

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/notify"
	"github.com/ferryhq/ferry/notify/notifytest"
	"github.com/ferryhq/ferry/store"
)

// hookReceiver is a real HTTP receiver on loopback that checks each delivery's HMAC with the
// secret the server printed and answers 503 while down.
type hookReceiver struct {
	*httptest.Server
	secret  atomic.Value // string
	down    atomic.Bool
	refused chan api.Event // signed tries answered 503
	taken   chan api.Event
}

func newHookReceiver(t *testing.T) *hookReceiver {
	rc := &hookReceiver{refused: make(chan api.Event, 100), taken: make(chan api.Event, 100)}
	rc.secret.Store("")
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		sig := r.Header.Get(api.HeaderSignature)
		if !hmac.Equal([]byte(sig), []byte(notify.Sign([]byte(rc.secret.Load().(string)), body))) {
			t.Errorf("a delivery with a bad signature %q", sig)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var e api.Event
		if err := json.Unmarshal(body, &e); err != nil || r.Header.Get(api.HeaderEvent) != e.Type ||
			r.Header.Get(api.HeaderDelivery) == "" {
			t.Errorf("delivery %s %q: %v", r.Header.Get(api.HeaderDelivery), body, err)
		}
		if rc.down.Load() {
			rc.refused <- e
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rc.taken <- e
	}))
	t.Cleanup(rc.Close)
	return rc
}

func recvHook(t *testing.T, ctx context.Context, ch chan api.Event) api.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-ctx.Done():
		t.Fatal("no delivery came")
		return api.Event{}
	}
}

// A real server posts the events a webhook's globs match to a real receiver, signed with the
// secret it printed once. Killed while a delivery waits for its retry (the fake clock never
// moves), the server resumes it when it starts again, from the store, with the same secret.
func TestWebhookSignedAndResumedAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC))
	rc := newHookReceiver(t)
	h := start(t, Config{DataDir: dir, Clock: clk})
	w, err := h.admin.AddWebhook(ctx, api.WebhookAdd{URL: rc.URL + "/ferry", Events: "site.*"})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Secret) != 64 || w.ID == "" || w.CreatedBy == "" {
		t.Fatalf("added %+v", w)
	}
	rc.secret.Store(w.Secret)
	h.site("ams", 1)
	if e := recvHook(t, ctx, rc.taken); e.Type != api.EventSiteAdded || e.Subject != "ams" || e.Actor == "" {
		t.Fatalf("delivered %+v", e)
	}
	if _, err := h.admin.CreateToken(ctx, api.TokenCreate{Role: api.RoleViewer}); err != nil {
		t.Fatal(err) // token.created: not a site.* event, never sent
	}

	rc.down.Store(true)
	h.site("fra", 2)
	fra := recvHook(t, ctx, rc.refused)
	if fra.Subject != "fra" {
		t.Fatalf("tried %+v", fra)
	}
	h.stop()

	rc.down.Store(false)
	h2 := start(t, Config{DataDir: dir, Clock: clk})
	if e := recvHook(t, ctx, rc.taken); e.ID != fra.ID {
		t.Fatalf("after the restart, delivered %+v; want site.added fra", e)
	}
	// Deliveries go in order: once the next is taken, fra's outcome is recorded.
	h2.site("lon", 2)
	if e := recvHook(t, ctx, rc.taken); e.Subject != "lon" {
		t.Fatalf("delivered %+v; want site.added lon", e)
	}
	hooks, err := h2.admin.Webhooks(ctx)
	if err != nil || len(hooks) != 1 || hooks[0].Secret != "" || hooks[0].Failures != 0 || hooks[0].Cursor < fra.ID {
		t.Fatalf("webhooks %+v, %v; want one, past fra (%d), without dead letters or its secret", hooks, err, fra.ID)
	}
	select {
	case e := <-rc.taken:
		t.Fatalf("unexpected delivery %+v", e)
	default:
	}
}

// Webhook input is refused with a clear error and nothing stored.
func TestWebhookRefusals(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	for _, tt := range []struct {
		req  api.WebhookAdd
		code int
	}{
		{api.WebhookAdd{URL: "ftp://example.org/x", Events: "*"}, http.StatusBadRequest},
		{api.WebhookAdd{URL: "https://u:p@example.org/x", Events: "*"}, http.StatusBadRequest},
		{api.WebhookAdd{URL: "https://example.org/x", Events: "Rollout.*"}, http.StatusBadRequest},
		{api.WebhookAdd{URL: "https://example.org/x", Events: "*", Secret: "short"}, http.StatusBadRequest},
	} {
		if _, err := h.admin.AddWebhook(ctx, tt.req); client.StatusOf(err) != tt.code {
			t.Errorf("AddWebhook(%+v): %v, want status %d", tt.req, err, tt.code)
		}
	}
	if err := h.admin.RemoveWebhook(ctx, "0123456789ab"); client.StatusOf(err) != http.StatusNotFound {
		t.Errorf("remove unknown: %v", err)
	}
	if hooks, err := h.admin.Webhooks(ctx); err != nil || len(hooks) != 0 {
		t.Errorf("webhooks after refusals: %+v, %v", hooks, err)
	}
}

// A server started with --smtp mails a rollout's ack request, waiting in its log, to the site's
// contact through a real SMTP server process.
func TestServerMailsSiteContacts(t *testing.T) {
	py := notifytest.Python(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := notifytest.FreeAddr(t)
	smtp := notifytest.StartSMTP(t, ctx, py, addr)
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	err = st.Update(ctx, func(tx store.Tx) error {
		// Mail goes out from where the server first ran with --smtp: here, before this request.
		if _, err := tx.StartCursor(api.EmailTarget, 0); err != nil {
			return err
		}
		id, err := tx.InsertRollout(store.RolloutRecord{App: "hello", Version: "2.0.0", Policy: "major", Plan: []byte(`{}`), Progress: []byte(`{}`),
			State: "running", Open: true, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			return err
		}
		_, err = tx.AppendEvents(api.NewEvent(now, api.EventRolloutNotify, api.RolloutSubject(id),
			api.RolloutNotify{ID: id, Wave: "pilot", Kind: "ack_escalate", Sites: []string{"ams"}, Contacts: []string{"noc@ams.example.org"}}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, Config{DataDir: dir, Store: st, SMTP: addr, SMTPFrom: "ferry@example.org"})
	msg := smtp.Next(t, ctx)
	for _, want := range []string{"From: ferry@example.org", "To: noc@ams.example.org", "Subject: Escalation: acknowledge rollout 1 of hello@2.0.0", "ferry rollout ack 1 --site ams"} {
		if !strings.Contains(msg, want) {
			t.Errorf("mail lacks %q:\n%s", want, msg)
		}
	}
}

func TestSMTPFlagsRefused(t *testing.T) {
	for _, cfg := range []Config{{SMTP: "mail.example.org", SMTPFrom: "ferry@example.org"}, {SMTP: "127.0.0.1:25", SMTPFrom: "Ferry <ferry@example.org>"}, {SMTP: "127.0.0.1:25"}} {
		cfg.DataDir = t.TempDir()
		if _, err := New(context.Background(), cfg); err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--smtp") {
			t.Errorf("New(--smtp %q --smtp-from %q) = %v; want one line naming the flag", cfg.SMTP, cfg.SMTPFrom, err)
		}
	}
}
