// Package notifytest runs what notification tests deliver to: a real SMTP server process on
// loopback (Debian's python3-aiosmtpd, which make test installs).
package notifytest

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Python returns a python3 that has aiosmtpd, or skips the test saying how to get one.
func Python(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import aiosmtpd").Run() == nil {
			return py
		}
	}
	t.Skip("no python3 with aiosmtpd, the SMTP server this test mails through: apt-get install python3-aiosmtpd (make test does)")
	return ""
}

// FreeAddr returns a loopback address nothing listens on now.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SMTP is an aiosmtpd process that prints each message it receives.
type SMTP struct {
	msgs chan string
}

// StartSMTP starts an SMTP server on addr with py (see Python), and returns once it listens;
// it stops with the test.
func StartSMTP(t *testing.T, ctx context.Context, py, addr string) *SMTP {
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
	s := &SMTP{msgs: make(chan string, 10)}
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
		case <-time.After(20 * time.Millisecond): // another process starting, not a clock of ours
		}
	}
}

// Next returns the next message received (headers, a blank line, the body; lines end in \n).
func (s *SMTP) Next(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-ctx.Done():
		t.Fatal("no mail came")
		return ""
	}
}

// None fails the test when a message has come that Next has not returned.
func (s *SMTP) None(t *testing.T) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Fatalf("an unexpected mail:\n%s", m)
	default:
	}
}
