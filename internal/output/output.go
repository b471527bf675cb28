// Package output collects what a command running in another goroutine prints, for tests that
// wait for a line of it without polling.
package output

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines is an io.Writer whose text a test can wait on.
type Lines struct {
	mu   sync.Mutex
	buf  strings.Builder
	grew chan struct{} // closed and replaced at every write
}

// New returns an empty Lines.
func New() *Lines { return &Lines{grew: make(chan struct{})} }

func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.grew)
	l.grew = make(chan struct{})
	return l.buf.Write(p)
}

func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// wait is how long Wait and WaitMatch wait before they fail the test.
const wait = 30 * time.Second

// Wait waits until what was printed holds s.
func (l *Lines) Wait(t testing.TB, s string) {
	t.Helper()
	l.until(t, func(text string) bool { return strings.Contains(text, s) }, "never printed "+s)
}

// WaitMatch waits until what was printed matches re, and returns the last submatch.
func (l *Lines) WaitMatch(t testing.TB, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	l.until(t, func(text string) bool { m = re.FindStringSubmatch(text); return m != nil }, "output never matched "+re.String())
	return m[len(m)-1]
}

func (l *Lines) until(t testing.TB, done func(string) bool, failure string) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok, grew := done(l.buf.String()), l.grew
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-grew:
		case <-deadline.C:
			t.Fatalf("%s; printed:\n%s", failure, l.String())
		}
	}
}
