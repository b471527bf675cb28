// Package send holds the transports the notifier is given: an HTTP client that POSTs webhook
// deliveries and an SMTP client that sends mail. Each bounds the time a try takes and what it
// reads back; deciding what to send, and when to try again, is package notify's.
package send

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"net/smtp"
	"net/url"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/notify"
)

// MaxAnswer is the most of a receiver's answer a webhook delivery reads.
const MaxAnswer = 64 << 10

// HTTP posts webhook deliveries.
type HTTP struct{ client *http.Client }

var _ notify.Sender = (*HTTP)(nil)

// NewHTTP returns a sender whose tries each take at most timeout, from dial to the answer's
// last byte read. Redirects are not followed: a receiver that moved answers 3xx, which fails.
func NewHTTP(timeout time.Duration) *HTTP {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	return &HTTP{client: &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Send posts one delivery; nil when the receiver answers 2xx.
func (h *HTTP) Send(ctx context.Context, r notify.Request) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return err
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", "ferry/"+api.Version)
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, MaxAnswer))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

// SMTP sends mail through one server, without authentication (a relay that trusts the
// server's address), upgrading to TLS when the relay offers STARTTLS.
type SMTP struct {
	addr    string
	timeout time.Duration
}

var _ notify.Mailer = (*SMTP)(nil)

// NewSMTP returns a mailer through the relay at addr (HOST:PORT); a try takes at most timeout.
func NewSMTP(addr string, timeout time.Duration) (*SMTP, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--smtp %q: want HOST:PORT of a mail relay", addr)
	}
	return &SMTP{addr: addr, timeout: timeout}, nil
}

// CheckAddress refuses what is not one plain email address (no name, no list).
func CheckAddress(what, s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("%s %q: want one email address, like ferry@example.org", what, s)
	}
	return nil
}

// Send sends one message to its recipients; those that are not plain addresses are left out.
func (m *SMTP) Send(ctx context.Context, msg notify.Mail) error {
	var to []string
	for _, a := range msg.To {
		if CheckAddress("contact", a) == nil {
			to = append(to, a)
		}
	}
	if len(to) == 0 {
		return fmt.Errorf("no valid recipient among %q", msg.To)
	}
	d := net.Dialer{Timeout: m.timeout}
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(m.timeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	host, _, _ := net.SplitHostPort(m.addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host}); err != nil {
			return err
		}
	}
	if err := c.Mail(msg.From); err != nil {
		return err
	}
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(message(msg, to)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// message renders a plain-text message: headers, a blank line, the body.
func message(msg notify.Mail, to []string) []byte {
	var b strings.Builder
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", msg.From)
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", strings.NewReplacer("\r", " ", "\n", " ").Replace(msg.Subject)))
	header("Date", msg.Date.Format(time.RFC1123Z))
	header("Message-ID", "<"+msg.ID+"@ferry>")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(msg.Body, "\r\n", "\n"), "\n", "\r\n"))
	return []byte(b.String())
}
