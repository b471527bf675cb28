package cli

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/server"
)

// The webhook verbs against a real server: add prints the secret alone, the receiver checks
// each delivery's HMAC with it (computed here, as a receiver would, without Ferry's code), list
// shows the webhook, rm removes it; bad input is one clear line, usage mistakes exit 2.
func TestWebhookVerbs(t *testing.T) {
	f := newFleet(t)
	got := make(chan api.Event, 10)
	secret := make(chan string, 1)
	var key string
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if key == "" {
			key = <-secret
		}
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(r.Header.Get("X-Ferry-Signature-256")), []byte(want)) {
			t.Errorf("signature %q, want %q", r.Header.Get("X-Ferry-Signature-256"), want)
		}
		var e api.Event
		json.Unmarshal(body, &e)
		got <- e
	}))
	defer rc.Close()

	out := f.mustFerry("webhook", "add", rc.URL+"/hooks/ferry", "--events", "site.*, rollout.*")
	if len(strings.TrimSpace(out)) != 64 || strings.Count(out, "\n") != 1 {
		t.Fatalf("webhook add printed %q; want the secret alone", out)
	}
	secret <- strings.TrimSpace(out)
	f.mustFerry("site", "add", "ams", "--tier", "1")
	select {
	case e := <-got:
		if e.Type != "site.added" || e.Subject != "ams" {
			t.Fatalf("delivered %+v", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery came")
	}

	var hooks []api.Webhook
	if err := json.Unmarshal([]byte(f.mustFerry("webhook", "list", "-o", "json")), &hooks); err != nil || len(hooks) != 1 ||
		hooks[0].URL != rc.URL+"/hooks/ferry" || strings.Join(hooks[0].Events, ",") != "site.*,rollout.*" || hooks[0].Secret != "" {
		t.Fatalf("webhook list -o json: %+v, %v", hooks, err)
	}
	id := hooks[0].ID
	table := f.mustFerry("webhook", "list")
	if !strings.Contains(table, "FAILURES") || !strings.Contains(table, id) || !strings.Contains(table, "site.*,rollout.*") {
		t.Fatalf("webhook list:\n%s", table)
	}
	if out := f.mustFerry("webhook", "failures", id, "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("webhook failures: %q", out)
	}

	// A secret of the operator's own: the id is printed instead.
	file := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(file, []byte("a-secret-of-our-own-choosing\n"), 0o600)
	if out := f.mustFerry("webhook", "add", rc.URL+"/two", "--events", "token.*", "--secret-file", file); len(strings.TrimSpace(out)) != 12 {
		t.Fatalf("webhook add --secret-file printed %q; want the id", out)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"webhook", "add", "ftp://example.org/x", "--events", "*"}, 1, `ferry: invalid webhook URL "ftp://example.org/x": want an http:// or https:// URL`},
		{[]string{"webhook", "add", "https://me:pw@example.org/x", "--events", "*"}, 1, "carries credentials"},
		{[]string{"webhook", "add", "https://example.org/x", "--events", "Site.*"}, 1, `event glob "Site.*": 'S' is not allowed`},
		{[]string{"webhook", "add", "https://example.org/x"}, 2, "give --events"},
		{[]string{"webhook", "rm", "nope"}, 1, `invalid webhook id "nope"`},
		{[]string{"webhook", "rm", "0123456789ab"}, 1, "no webhook 0123456789ab"},
		{[]string{"webhook", "frob"}, 2, `unknown command "frob"`},
	} {
		out, errOut, code := f.ferry(tt.args...)
		if code != tt.code || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit %d saying %q on one line", strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.want)
		}
	}

	if out := f.mustFerry("webhook", "rm", id); out != "webhook "+id+" removed\n" {
		t.Fatalf("webhook rm: %q", out)
	}
	if err := json.Unmarshal([]byte(f.mustFerry("webhook", "list", "-o", "json")), &hooks); err != nil || len(hooks) != 1 || hooks[0].ID == id {
		t.Fatalf("after rm: %+v, %v", hooks, err)
	}
}

// webhook retry against a real server and a receiver on loopback that refuses, then takes: the
// dead letter leaves the list and is delivered; the retry is an event of the operator.
func TestWebhookRetry(t *testing.T) {
	f := newFleetWith(t, server.Config{WebhookAttempts: 1})
	var refuse atomic.Bool
	refuse.Store(true)
	got := make(chan api.Event, 10)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var e api.Event
		json.NewDecoder(r.Body).Decode(&e)
		got <- e
	}))
	defer rc.Close()
	var hook api.Webhook
	if err := json.Unmarshal([]byte(f.mustFerry("webhook", "add", rc.URL, "--events", "site.*", "-o", "json")), &hook); err != nil {
		t.Fatal(err)
	}
	f.mustFerry("site", "add", "ams", "--tier", "1")
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	failed, err := f.admin.WaitEvent(ctx, 0, func(e api.Event) bool { return e.Type == api.EventDeliveryFailed })
	if err != nil {
		t.Fatal(err)
	}
	var p api.DeliveryFailed
	if failed.Decode(&p) != nil || p.EventType != "site.added" {
		t.Fatalf("delivery.failed %+v", failed)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"webhook", "retry", hook.ID}, 2, "ferry: webhook retry: give --id EVENT (see webhook failures " + hook.ID + ") or --all\n"},
		{[]string{"webhook", "retry", hook.ID, "--all", "--id", "3"}, 2, "or --all\n"},
		{[]string{"webhook", "retry", hook.ID, "--id", "999"}, 1, "ferry: webhook " + hook.ID + " has no dead letter of event 999; see ferry webhook failures " + hook.ID + "\n"},
		{[]string{"webhook", "retry", "0123456789ab", "--all"}, 1, "ferry: no webhook 0123456789ab; see ferry webhook list\n"},
	} {
		out, errOut, code := f.ferry(tt.args...)
		if code != tt.code || out != "" || !strings.HasSuffix(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.want)
		}
	}

	refuse.Store(false)
	want := fmt.Sprintf("1 dead letter(s) of webhook %s queued for delivery again (events %d); a new failure lists them again\n", hook.ID, p.EventID)
	if out := f.mustFerry("webhook", "retry", hook.ID, "--id", strconv.FormatInt(p.EventID, 10)); out != want {
		t.Fatalf("webhook retry printed %q, want %q", out, want)
	}
	if out := f.mustFerry("webhook", "failures", hook.ID, "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("dead letters after the retry: %s", out)
	}
	select {
	case e := <-got:
		if e.ID != p.EventID || e.Type != "site.added" {
			t.Fatalf("delivered %+v, want event %d", e, p.EventID)
		}
	case <-ctx.Done():
		t.Fatal("the retried dead letter was not delivered")
	}
	if _, errOut, code := f.ferry("webhook", "retry", hook.ID, "--all"); code != 1 || errOut != "ferry: webhook "+hook.ID+" has no dead letters to retry\n" {
		t.Errorf("retry --all with none: exit %d, %q", code, errOut)
	}
	var retried []api.Event
	for _, e := range f.events() {
		if e.Type == api.EventWebhookRetried {
			retried = append(retried, e)
		}
	}
	if len(retried) != 1 || retried[0].Subject != hook.ID || !strings.HasPrefix(retried[0].Actor, "token:") {
		t.Errorf("webhook.retried events %+v", retried)
	}
}
