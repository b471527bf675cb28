package supervise

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
)

// The restart policy: at once after the first death, doubling waits after more within the
// window, crashloop past the burst, which only a run of a whole window ends.
func TestRestartPolicy(t *testing.T) {
	r := Spec{}.withDefaults().Restart
	t0 := time.Unix(1e9, 0)
	h := &history{}
	now := t0
	var got []time.Duration
	for i := 0; i < 7; i++ {
		wait, crash := r.afterDeath(h, now, now) // dies at once
		if crash {
			wait = -wait // mark crashloop
		}
		got = append(got, wait)
		now = now.Add(max(wait, -wait))
		h.restarted(now, r.Burst)
	}
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, -2 * time.Minute, -2 * time.Minute}
	if !equal(got, want) {
		t.Fatalf("waits %v, want %v (negative: crashloop)", got, want)
	}
	// A try that runs for less than a window stays in crashloop; one that runs a window ends it.
	if _, crash := r.afterDeath(h, now, now.Add(r.Window-time.Second)); !crash {
		t.Fatal("a short try left crashloop")
	}
	now = now.Add(r.Window - time.Second)
	h.restarted(now, r.Burst)
	if wait, crash := r.afterDeath(h, now, now.Add(r.Window)); crash || wait != 0 {
		t.Fatalf("after a run of a whole window: wait %v, crashloop %v", wait, crash)
	}
	// Deaths far apart are each restarted at once.
	h = &history{}
	for i := range 10 {
		at := t0.Add(time.Duration(i) * 2 * r.Window)
		if wait, crash := r.afterDeath(h, at.Add(-time.Second), at); wait != 0 || crash {
			t.Fatalf("death %d, a window after the last: wait %v, crashloop %v", i, wait, crash)
		}
		h.restarted(at, r.Burst)
	}
	// No backoff: at once until the burst.
	r.Backoff = -1
	h = &history{}
	for i := range r.Burst {
		if wait, crash := r.afterDeath(h, t0, t0); wait != 0 || crash {
			t.Fatalf("no backoff, death %d: wait %v, crashloop %v", i, wait, crash)
		}
		h.restarted(t0, r.Burst)
	}
	if _, crash := r.afterDeath(h, t0, t0); !crash {
		t.Fatal("no backoff: no crashloop past the burst")
	}
	// The history keeps no more than the burst.
	for range 100 {
		h.restarted(t0, r.Burst)
	}
	if len(h.restarts) != r.Burst {
		t.Fatalf("history holds %d restarts, burst %d", len(h.restarts), r.Burst)
	}
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Hostile or mistaken specs are refused with a message naming what is wrong.
func TestHostileSpecsRefused(t *testing.T) {
	ok := func() Spec { return Spec{Name: "web", Command: []string{"/bin/sh", "-c", "true"}} }
	tests := []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"empty command", func(s *Spec) { s.Command = nil }, "empty command"},
		{"empty program", func(s *Spec) { s.Command = []string{""} }, "empty command"},
		{"empty name", func(s *Spec) { s.Name = "" }, "invalid process name"},
		{"name escaping the log dir", func(s *Spec) { s.Name = "../etc/passwd" }, "invalid process name"},
		{"name with a slash", func(s *Spec) { s.Name = "a/b" }, "invalid process name"},
		{"long name", func(s *Spec) { s.Name = strings.Repeat("a", 64) }, "invalid process name"},
		{"relative dir", func(s *Spec) { s.Dir = "release" }, "not an absolute path"},
		{"NUL in argument", func(s *Spec) { s.Command = []string{"/bin/sh", "a\x00b"} }, "NUL"},
		{"env without =", func(s *Spec) { s.Env = []string{"PATH"} }, "KEY=value"},
		{"env without key", func(s *Spec) { s.Env = []string{"=x"} }, "KEY=value"},
		{"huge env", func(s *Spec) { s.Env = []string{"A=" + strings.Repeat("x", 2<<20)} }, "at most"},
		{"too many env entries", func(s *Spec) { s.Env = make([]string, 5000) }, "entries"},
		{"too many arguments", func(s *Spec) { s.Command = append([]string{"/bin/sh"}, make([]string, 5000)...) }, "arguments"},
		{"negative burst", func(s *Spec) { s.Restart.Burst = -1 }, "restart burst"},
		{"absurd burst", func(s *Spec) { s.Restart.Burst = 1 << 30 }, "restart burst"},
		{"tiny window", func(s *Spec) { s.Restart.Window = time.Nanosecond }, "restart window"},
		{"huge window", func(s *Spec) { s.Restart.Window = 1000 * time.Hour }, "restart window"},
		{"huge max backoff", func(s *Spec) { s.Restart.MaxBackoff = 1000 * time.Hour }, "max backoff"},
		{"backoff above max", func(s *Spec) { s.Restart.Backoff = time.Hour }, "above max backoff"},
		{"negative grace", func(s *Spec) { s.StopGrace = -time.Second }, "stop grace"},
		{"huge grace", func(s *Spec) { s.StopGrace = 100 * time.Hour }, "stop grace"},
		{"tiny log", func(s *Spec) { s.Logs.MaxSize = 1 }, "log max size"},
		{"huge log", func(s *Spec) { s.Logs.MaxSize = 1 << 40 }, "log max size"},
		{"many generations", func(s *Spec) { s.Logs.Keep = 1000 }, "generations"},
		{"negative generations", func(s *Spec) { s.Logs.Keep = -1 }, "generations"},
		{"missing program", func(s *Spec) { s.Command = []string{"/no/such/program"} }, "no such file"},
		{"program not executable", func(s *Spec) { s.Command = []string{"/etc/passwd"} }, "not executable"},
		{"program is a directory", func(s *Spec) { s.Command = []string{"/tmp/"} }, "not a regular file"},
		{"program not in PATH", func(s *Spec) { s.Command = []string{"sh"}; s.Env = []string{"PATH=/nonexistent"} }, "not found in PATH"},
		{"unknown user", func(s *Spec) { s.User = "no-such-user-here" }, "no-such-user-here"},
	}
	sup, err := Open(Config{StateDir: t.TempDir(), LogDir: t.TempDir(), Clock: clock.NewFake(time.Unix(1e9, 0)), RotateEvery: farAway})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := ok()
			tt.edit(&spec)
			err := sup.Start(context.Background(), spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want an error about %q", err, tt.want)
			}
		})
	}
	if got := sup.List(); len(got) != 0 {
		t.Fatalf("refused specs are listed: %+v", got)
	}
	if _, err := sup.Tail("../x", 10); err == nil {
		t.Fatal("Tail of a name outside the log dir worked")
	}
	for _, n := range []int{0, -1, MaxTailLines + 1} {
		if _, err := sup.Tail("web", n); err == nil {
			t.Fatalf("Tail of %d lines worked", n)
		}
	}
}

// A user is refused, clearly, when the supervisor is not root.
func TestUserNeedsRoot(t *testing.T) {
	_, err := credential("web", "nobody", 1000)
	if err == nil || !strings.Contains(err.Error(), "needs a supervisor running as root") {
		t.Fatalf("credential as uid 1000: %v", err)
	}
	if c, err := credential("web", "", 1000); c != nil || err != nil {
		t.Fatalf("no user: %v, %v", c, err)
	}
	c, err := credential("web", "0", 0)
	if err != nil || c.Uid != 0 || c.Gid != 0 {
		t.Fatalf("numeric uid 0 as root: %+v, %v", c, err)
	}
}

// A relative program is found in Dir; a bare name in Env's PATH, or in DefaultPath.
func TestResolve(t *testing.T) {
	for _, tt := range []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "a", Command: []string{"./sh"}, Dir: "/bin"}, "/bin/sh"},
		{Spec{Name: "a", Command: []string{"sh"}, Dir: "/", Env: []string{"PATH=relative:/bin"}}, "/bin/sh"},
		{Spec{Name: "a", Command: []string{"sh"}, Dir: "/"}, "/usr/bin/sh"},
	} {
		got, err := tt.spec.resolve()
		if err != nil || got != tt.want {
			t.Errorf("resolve %q in %s with %q = %q, %v; want %q", tt.spec.Command[0], tt.spec.Dir, tt.spec.Env, got, err, tt.want)
		}
	}
}

// Open refuses a missing directory and absurd rotation periods.
func TestOpenRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{LogDir: t.TempDir()},
		{StateDir: t.TempDir()},
		{StateDir: t.TempDir(), LogDir: t.TempDir(), RotateEvery: time.Millisecond},
		{StateDir: t.TempDir(), LogDir: t.TempDir(), RotateEvery: 1000 * time.Hour},
	} {
		if s, err := Open(cfg); err == nil {
			s.Close()
			t.Errorf("Open(%+v) worked", cfg)
		}
	}
}
