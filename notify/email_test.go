package notify_test

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/notify/send"
	"github.com/ferryhq/ferry/store"
)

// aiosmtpd returns a Python that has aiosmtpd (Debian's python3-aiosmtpd, which `make test`
// installs), or skips the test.
func aiosmtpd(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import aiosmtpd").Run() == nil {
			return py
		}
	}
	t.Skip("no python3 with aiosmtpd, the SMTP server this test mails through: apt-get install python3-aiosmtpd (make test does)")
	return ""
}

// smtpServer is a real SMTP server process on loopback that prints each message it receives.
type smtpServer struct {
	msgs chan string
}

func startSMTP(t *testing.T, ctx context.Context, py, addr string) *smtpServer {
	t.Helper()
	cmd := exec.CommandContext(ctx, py, "-u", "-m", "aiosmtpd", "-n", "-l", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &smtpServer{msgs: make(chan string, 10)}
	go func() {
		sc := bufio.NewScanner(out)
		var msg []string
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "---------- MESSAGE FOLLOWS"):
				msg = nil
			case strings.HasPrefix(line, "------------ END MESSAGE"):
				s.msgs <- strings.Join(msg, "\n")
			default:
				msg = append(msg, line)
			}
		}
	}()
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the SMTP server never listened on %s", addr)
		case <-time.After(20 * time.Millisecond): // waiting on another process, not on the notifier's clock
		}
	}
}

// A rollout's ack request is mailed to the sites' contacts through a real SMTP server: one
// plain-text message naming the rollout, release and wave, and the command that answers. The
// relay is down at the first try; the retry, on the clock, gets through.
func TestEmailToSiteContacts(t *testing.T) {
	py := aiosmtpd(t)
	r := newRig(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
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
	srv := startSMTP(t, r.ctx, py, addr)
	r.clk.Advance(time.Second)
	var msg string
	select {
	case msg = <-srv.msgs:
	case <-r.ctx.Done():
		t.Fatal("no mail came")
	}
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
	select {
	case m := <-srv.msgs:
		t.Fatalf("a second mail:\n%s", m)
	default:
	}
}
