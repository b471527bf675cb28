package check

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newRunner() *Runner { return NewRunner(clock.NewFake(t0)) }

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHTTP(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "fine") })
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "\n  database down\nsecond line")
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "event: hello\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)

	cases := []struct {
		url     string
		timeout time.Duration
		state   State
		output  string
	}{
		{srv.URL + "/healthz", 0, OK, "HTTP OK: 200 OK"},
		{srv.URL + "/created", 0, OK, "HTTP OK: 201 Created"},
		{srv.URL + "/stream", time.Hour, OK, "HTTP OK: 200 OK"}, // the head decides; the body is not awaited
		{srv.URL + "/down", 0, Critical, "HTTP CRITICAL: 503 Service Unavailable: database down"},
		{srv.URL + "/moved", 0, Critical, "HTTP CRITICAL: 302 Found"},
		{srv.URL + "/hang", 200 * time.Millisecond, Critical, "HTTP CRITICAL: no answer within 200ms"},
		{"http://" + closedPort(t) + "/", 0, Critical, "connection refused"},
		{"http://[::1/", 0, Unknown, "HTTP UNKNOWN:"},
	}
	r := newRunner()
	for _, c := range cases {
		res := r.Run(context.Background(), Spec{HTTP: c.url, Timeout: c.timeout})
		if res.State != c.state || !strings.Contains(res.Output, c.output) || strings.Contains(res.Output, "\n") {
			t.Errorf("%s: %v %q, want %v containing %q", c.url, res.State, res.Output, c.state, c.output)
		}
		if !res.Time.Equal(t0) {
			t.Errorf("%s: time %v, want the clock's %v", c.url, res.Time, t0)
		}
	}
	res := r.Run(context.Background(), Spec{HTTP: srv.URL + "/healthz"})
	if len(res.Perf) != 1 || res.Perf[0].Label != "time" || res.Perf[0].UOM != "s" {
		t.Errorf("perf %+v", res.Perf)
	}
}

func TestTCP(t *testing.T) {
	l := acceptAndClose(t)
	r := newRunner()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		ctx    context.Context
		addr   string
		state  State
		output string
	}{
		{context.Background(), l.Addr().String(), OK, "TCP OK: connected to " + l.Addr().String()},
		{context.Background(), closedPort(t), Critical, "connection refused"},
		{context.Background(), "no-port", Unknown, "TCP UNKNOWN"},
		{cancelled, l.Addr().String(), Unknown, "check cancelled"},
	}
	for _, c := range cases {
		res := r.Run(c.ctx, Spec{TCP: c.addr})
		if res.State != c.state || !strings.Contains(res.Output, c.output) {
			t.Errorf("%s: %v %q, want %v containing %q", c.addr, res.State, res.Output, c.state, c.output)
		}
	}
}

func TestInvalidSpec(t *testing.T) {
	for _, s := range []Spec{{}, {HTTP: "http://x", TCP: "x:1"}, {TCP: "x:1", Exec: []string{"true"}}} {
		if res := newRunner().Run(context.Background(), s); res.State != Unknown {
			t.Errorf("%+v: %v %q", s, res.State, res.Output)
		}
	}
}

// acceptAndClose listens on loopback and closes every connection it accepts, until the test ends.
func acceptAndClose(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l
}
