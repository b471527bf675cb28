package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/notify/notifytest"
	"github.com/ferryhq/ferry/notify/send"
	"github.com/ferryhq/ferry/store"
)

// A rollout's ack request is mailed to the sites' contacts through a real SMTP server: one
// plain-text message naming the rollout, release and wave, and the command that answers. The
// relay is down at the first try; the retry, on the clock, gets through.
func TestEmailToSiteContacts(t *testing.T) {
	py := notifytest.Python(t)
	r := newRig(t)
	addr := notifytest.FreeAddr(t)
	mailer, err := send.NewSMTP(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	err = r.st.Update(r.ctx, func(tx store.Tx) (err error) {
		// Email starts from where the notifier first runs with it; here, from the start.
		if _, err := tx.StartCursor(api.EmailTarget, 0); err != nil {
			return err
		}
		id, err = tx.InsertRollout(store.RolloutRecord{App: "hello", Version: "1.4.0", Policy: "major", Plan: []byte(`{}`), Progress: []byte(`{}`),
			State: "running", Open: true, CreatedAt: t0, UpdatedAt: t0})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Not mailed: no contacts.
	store.AppendEvent(r.ctx, r.st, api.NewEvent(t0, api.EventRolloutNotify, api.RolloutSubject(id), api.RolloutNotify{ID: id, Wave: "pilot", Kind: "ack_request", Sites: []string{"fra"}}))
	ev, err := store.AppendEvent(r.ctx, r.st, api.NewEvent(t0, api.EventRolloutNotify, api.RolloutSubject(id), api.RolloutNotify{ID: id, Wave: "pilot", Kind: "ack_request",
		Sites: []string{"ams"}, Contacts: []string{"ops@ams.example.org", "not an address"}}))
	if err != nil {
		t.Fatal(err)
	}
	r.start(8, mailer)
	if err := r.clk.WaitPending(r.ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv := notifytest.StartSMTP(t, r.ctx, py, addr)
	r.clk.Advance(time.Second)
	msg := srv.Next(t, r.ctx)
	for _, want := range []string{
		"From: ferry@example.org",
		"To: ops@ams.example.org\n",
		"Subject: acknowledge rollout 1 of hello@1.4.0, wave pilot (sites ams)",
		"Content-Type: text/plain; charset=utf-8",
		`wave "pilot"`,
		"    ferry rollout ack 1 --site ams",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("mail lacks %q:\n%s", want, msg)
		}
	}
	for {
		changed := r.st.Changed() // before the read, so a commit after it is not missed
		var at int64
		if err := r.st.Update(r.ctx, func(tx store.Tx) (err error) { at, err = tx.StartCursor(api.EmailTarget, 0); return err }); err != nil {
			t.Fatal(err)
		}
		if at >= ev.ID {
			break
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			t.Fatal("the email's cursor never moved past the mail")
		}
	}
	srv.None(t)
}
