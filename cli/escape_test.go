package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferryhq/ferry/api"
)

func TestSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"web-01.ams", "web-01.ams"},
		{`C:\path with spaces`, `C:\path with spaces`},
		{"naïve → 1.5.0 ×3 日本", "naïve → 1.5.0 ×3 日本"},
		{"\x1b[2J", `\x1b[2J`},
		{"n1\x1b]0;pwned\x07", `n1\x1b]0;pwned\a`},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{"\x00\x7f", `\x00\x7f`},
		{"\u009b2J", `\u009b2J`},                   // C1 CSI, UTF-8 encoded
		{"\x9b2J", `\x9b2J`},                       // C1 CSI as a raw, non-UTF-8 byte
		{"\xff\xfe", `\xff\xfe`},                   // not UTF-8
		{"evil\u202egpj.exe", `evil\u202egpj.exe`}, // right-to-left override
		{"\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"\u2066x\u2067y\u2068z\u2069", `\u2066x\u2067y\u2068z\u2069`},
		{"a\u200eb\u200fc\u061cd", `a\u200eb\u200fc\u061cd`},
		{"line\u2028sep\u2029", `line\u2028sep\u2029`},
	}
	for _, tt := range tests {
		if got := safe(tt.in); got != tt.want {
			t.Errorf("safe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// noControls fails the test if out holds a byte or character that safe must remove.
func noControls(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		if r == '\n' {
			continue // the line breaks of the output itself
		}
		if r == utf8.RuneError || unsafeRune(r) {
			t.Fatalf("%s: %U at byte %d reaches the terminal:\n%q", what, r, i, out)
		}
	}
}

func TestTableEscapes(t *testing.T) {
	var out strings.Builder
	e := &env{stdout: &out}
	err := e.table([]string{"NAME", "HOSTNAME"}, [][]string{
		{"n1", "\x1b[2J"},
		{"n2\ttab", "two\nlines"},
		{"n3", "\u202eevil"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.IndexByte(out.String(), 0x1b) >= 0 {
		t.Fatalf("table output holds an ESC byte: %q", out.String())
	}
	noControls(t, "table", out.String())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], `\x1b[2J`) || !strings.Contains(lines[2], `n2\ttab`) {
		t.Fatalf("table output:\n%s", out.String())
	}
}

func TestPrintfEscapes(t *testing.T) {
	var out strings.Builder
	e := &env{stdout: &out}
	e.printf("%s@%s: %v (%d/%d)\n", "hello", "1.0\x1b[31m", errors.New("boom\x1b[2J"), 1, 2)
	if got, want := out.String(), "hello@1.0\\x1b[31m: boom\\x1b[2J (1/2)\n"; got != want {
		t.Fatalf("printf wrote %q, want %q", got, want)
	}
}

// TestNodeShowEscapes runs `ferry node show` against a server that returns hostile strings
// in every field it can.
func TestNodeShowEscapes(t *testing.T) {
	evil := "\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e"
	node := api.Node{
		Name: "n1" + evil, Site: "ams" + evil, Status: api.StatusUp + evil,
		Labels:     map[string]string{"role" + evil: "x" + evil},
		SiteLabels: map[string]string{"pilot" + evil: "y" + evil},
		Facts:      api.Facts{Hostname: "h" + evil, OS: "linux" + evil, Arch: evil, AgentVersion: evil},
		Apps:       []api.NodeApp{{App: "hello" + evil, Version: evil, Pending: evil, Error: "failed" + evil}},
		Assigned:   []api.Assignment{{App: "other" + evil, Version: evil}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/v1/nodes/") {
			json.NewEncoder(w).Encode(node)
			return
		}
		json.NewEncoder(w).Encode([]api.Node{node})
	}))
	defer srv.Close()
	for _, verb := range [][]string{{"node", "show", "n1"}, {"node", "list"}} {
		var stdout, stderr strings.Builder
		args := append(verb, "--server", srv.URL, "--token", "t")
		if err := run(context.Background(), args, &stdout, &stderr, func(string) string { return "" }); err != nil {
			t.Fatalf("%v: %v", verb, err)
		}
		if !strings.Contains(stdout.String(), `\x1b]0;pwned\a\x1b[2J\u009b31m\u202e`) {
			t.Fatalf("%v: escaped text missing:\n%s", verb, stdout.String())
		}
		noControls(t, strings.Join(verb, " "), stdout.String())
	}
}

// FuzzSafe: safe's output is valid UTF-8 without a character it must escape, and text that
// holds none of them comes back unchanged.
func FuzzSafe(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2J", "\u202e", "\xff", "\u009b", "a\\x1b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := safe(s)
		if !utf8.ValidString(out) {
			t.Fatalf("safe(%q) = %q is not UTF-8", s, out)
		}
		for _, r := range out {
			if unsafeRune(r) {
				t.Fatalf("safe(%q) = %q keeps %U", s, out, r)
			}
		}
		clean := utf8.ValidString(s)
		for _, r := range s {
			clean = clean && !unsafeRune(r)
		}
		if clean && out != s {
			t.Fatalf("safe changed clean text %q to %q", s, out)
		}
	})
}

// The one error line the binary prints shows a server's control characters, never obeys them.
func TestMessageEscapes(t *testing.T) {
	m := Message(errors.New("node \x1b]0;owned\x07 not found"))
	if strings.ContainsAny(m, "\x1b\x07") || !strings.HasPrefix(m, "ferry: node ") {
		t.Fatalf("Message = %q", m)
	}
}
