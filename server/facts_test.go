package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
)

// badFacts are agent reports the server must refuse, each a variation of a good one.
func badFacts(good api.Facts) map[string]api.Facts {
	with := func(change func(*api.Facts)) api.Facts { f := good; change(&f); return f }
	return map[string]api.Facts{
		"ESC in hostname":     with(func(f *api.Facts) { f.Hostname = "n1\x1b]0;pwned\x07\x1b[2J" }),
		"1 MB hostname":       with(func(f *api.Facts) { f.Hostname = strings.Repeat("a", 1_000_000) }),
		"bidi in hostname":    with(func(f *api.Facts) { f.Hostname = "n1\u202egpj.exe" }),
		"newline in os":       with(func(f *api.Facts) { f.OS = "linux\nfake: line" }),
		"long arch":           with(func(f *api.Facts) { f.Arch = strings.Repeat("x", 33) }),
		"C1 in agent_version": with(func(f *api.Facts) { f.AgentVersion = "1.0\u009b2J" }),
		"space in version":    with(func(f *api.Facts) { f.AgentVersion = "1.0 beta" }),
		"negative cpus":       with(func(f *api.Facts) { f.CPUs = -1 }),
		"absurd cpus":         with(func(f *api.Facts) { f.CPUs = 1 << 40 }),
	}
}

func TestEnrollRefusesBadFacts(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	h := start(t, Config{Clock: clk})
	ctx := context.Background()
	h.site("ams", 1)
	ac := h.client("")
	tok := h.enrollToken("ams", 1)
	good := api.Facts{Hostname: "n1.ams.example.com", OS: "linux", Arch: "amd64", CPUs: 8,
		MemoryBytes: 16 << 30, AgentVersion: api.Version}

	// Enrollment: refused whole, before the token is spent or anything is written.
	before := lastEventID(t, h.admin)
	for name, f := range badFacts(good) {
		req, _ := signed(t, tok, "n1")
		req.Facts = f
		_, err := ac.Enroll(ctx, req)
		if client.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("enroll, %s: got %v, want status 400", name, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "facts:") || strings.ContainsAny(msg, "\n\x1b") || len(msg) > 300 {
			t.Errorf("enroll, %s: error is not one short line naming the field: %q", name, msg)
		}
	}
	if _, err := h.admin.Node(ctx, "n1"); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("a refused enrollment stored node n1: %v", err)
	}
	if got := lastEventID(t, h.admin); got != before {
		t.Fatalf("refused enrollments wrote events (%d → %d)", before, got)
	}

	// The single-use token is still good for a well-formed enrollment.
	req, priv := signed(t, tok, "n1")
	req.Facts = good
	if _, err := ac.Enroll(ctx, req); err != nil {
		t.Fatal(err)
	}
	ch, err := ac.Challenge(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage("n1", ch.Nonce)))
	sess, err := ac.Session(ctx, api.SessionRequest{Node: "n1", Nonce: ch.Nonce, Signature: sig})
	if err != nil {
		t.Fatal(err)
	}

	// Sync: a bad fact refuses the whole report (facts and apps), and nothing is recorded.
	before = lastEventID(t, h.admin)
	apps := []api.NodeApp{{App: "hello", Version: "1.0.0"}}
	for name, f := range badFacts(good) {
		_, err := syncOnce(ac, sess.Token, api.Sync{Generation: -1, Facts: &f, Apps: &apps})
		if client.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("sync, %s: got %v, want status 400", name, err)
		}
	}
	n, err := h.admin.Node(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	stored := n.Facts
	stored.Protocol = 0
	if stored != good {
		t.Fatalf("refused syncs changed the stored facts: %+v, want %+v", n.Facts, good)
	}
	if len(n.Apps) != 0 {
		t.Fatalf("a refused report's apps were stored: %+v", n.Apps)
	}
	if got := lastEventID(t, h.admin); got != before {
		t.Fatalf("refused syncs wrote events (%d → %d)", before, got)
	}

	// A well-formed report still goes through.
	renamed := good
	renamed.Hostname = "n1-new.ams.example.com"
	if _, err := syncOnce(ac, sess.Token, api.Sync{Generation: -1, Facts: &renamed}); err != nil {
		t.Fatal(err)
	}
	if n, err := h.admin.Node(ctx, "n1"); err != nil || n.Facts.Hostname != renamed.Hostname {
		t.Fatalf("good facts not stored: %+v, %v", n.Facts, err)
	}
}

func TestValidFacts(t *testing.T) {
	good := []api.Facts{
		{},
		{Hostname: "n1", CPUs: 2},
		{Hostname: "web-01.ams.example.com", OS: "linux", Arch: "amd64", CPUs: 64, AgentVersion: "0.1.0-dev"},
		{Hostname: "DESKTOP-AB12_C", OS: "windows", Arch: "arm64", AgentVersion: "v1.2.3+git.abc123"},
		{Hostname: strings.Repeat("a", maxHostname), OS: "linux", Arch: "mips64le", CPUs: maxCPUs, MemoryBytes: 1 << 63},
	}
	for _, f := range good {
		if err := validFacts(f); err != nil {
			t.Errorf("validFacts(%+v): %v", f, err)
		}
	}
	for name, f := range badFacts(good[2]) {
		err := validFacts(f)
		var he *httpError
		if !errors.As(err, &he) || he.code != http.StatusBadRequest {
			t.Errorf("%s: got %v, want a 400", name, err)
		}
	}
	if err := validFacts(api.Facts{Hostname: strings.Repeat("a", maxHostname+1)}); err == nil {
		t.Errorf("validFacts accepted a %d-byte hostname", maxHostname+1)
	}
}

// FuzzValidFacts: whatever validFacts accepts is safe to store and print: no control
// characters (C0, DEL, C1, ESC), no non-ASCII (so no bidi overrides), within the length
// limits; whatever it refuses gets a one-line 400.
func FuzzValidFacts(f *testing.F) {
	f.Add("n1.example.com", "linux", "amd64", "0.1.0-dev", 8)
	f.Add("n1\x1b[2J", "linux", "amd64", "0.1.0", 1)
	f.Add("a\u202eb", "LINUX", "x 86", "1.0\n", -1)
	f.Add("", "", "", "", 0)
	f.Add("host_1", "windows", "arm64", "v1.2.3+git", 65536)
	f.Fuzz(func(t *testing.T, host, goos, arch, version string, cpus int) {
		facts := api.Facts{Hostname: host, OS: goos, Arch: arch, AgentVersion: version, CPUs: cpus}
		err := validFacts(facts)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.code != http.StatusBadRequest {
				t.Fatalf("refusal is not a 400: %v", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r\x1b") {
				t.Fatalf("refusal is not one clean line: %q", err.Error())
			}
			return
		}
		for _, s := range []string{host, goos, arch, version} {
			for i := 0; i < len(s); i++ {
				if c := s[i]; c < 0x20 || c >= 0x7f {
					t.Fatalf("accepted %q with byte %#x", s, c)
				}
			}
		}
		if len(host) > maxHostname || len(goos) > maxPlatform || len(arch) > maxPlatform || len(version) > maxAgentVersion {
			t.Fatalf("accepted over-long facts %+v", facts)
		}
		if cpus < 0 || cpus > maxCPUs {
			t.Fatalf("accepted cpus %d", cpus)
		}
		if strings.ContainsAny(goos+arch+version+host, " ") {
			t.Fatalf("accepted a space in %+v", facts)
		}
	})
}
