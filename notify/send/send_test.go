package send

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/notify"
)

// A try fails on anything but a 2xx: a redirect is not followed; it reads a bounded part of a
// huge answer; a receiver that never answers fails the try at the timeout.
func TestHTTPSend(t *testing.T) {
	hang := make(chan struct{})
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			if r.Header.Get("X-Ferry-Event") != "app.state" || r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(http.StatusBadRequest)
			}
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/huge":
			chunk := []byte(strings.Repeat("x", 1<<16))
			for range 1 << 10 { // 64 MiB, if anyone read it
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	defer rc.Close()
	defer close(hang) // before the server closes, which waits for its handlers
	h := NewHTTP(500 * time.Millisecond)
	send := func(path string) error {
		return h.Send(context.Background(), notify.Request{URL: rc.URL + path, Body: []byte(`{}`),
			Header: map[string]string{"X-Ferry-Event": "app.state", "Content-Type": "application/json"}})
	}
	if err := send("/ok"); err != nil {
		t.Errorf("ok: %v", err)
	}
	if err := send("/moved"); err == nil || err.Error() != "the receiver answered 302 Found" {
		t.Errorf("redirect: %v", err)
	}
	if err := send("/huge"); err != nil {
		t.Errorf("huge answer: %v", err)
	}
	if err := send("/hang"); err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("no answer: %v", err)
	}
}

// A message is headers and a plain-text body with CRLF line ends; no line break in the subject
// can add a header.
func TestMessage(t *testing.T) {
	m := string(message(notify.Mail{From: "ferry@example.org", Subject: "ack\r\nBcc: evil@example.org", Body: "line one\nline two\n",
		Date: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC), ID: "email-7"}, []string{"a@example.org", "b@example.org"}))
	for _, want := range []string{"From: ferry@example.org\r\n", "To: a@example.org, b@example.org\r\n", "Subject: ack  Bcc: evil@example.org\r\n",
		"Date: Mon, 01 Jun 2026 09:00:00 +0000\r\n", "Message-ID: <email-7@ferry>\r\n", "\r\n\r\nline one\r\nline two\r\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("message lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "\nBcc:") {
		t.Errorf("a header was injected:\n%s", m)
	}
}

func TestCheckAddress(t *testing.T) {
	if err := CheckAddress("--smtp-from", "ferry@example.org"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "ferry", "Ferry <ferry@example.org>", "a@example.org, b@example.org", "a@example.org\r\nBcc: x@y"} {
		if err := CheckAddress("--smtp-from", bad); err == nil {
			t.Errorf("CheckAddress(%q) passed", bad)
		}
	}
}
