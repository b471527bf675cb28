package notify

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/fault"
)

func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		globs string
		typ   string
		want  bool
	}{
		{"*", "rollout.started", true},
		{"*", "", true},
		{"rollout.*", "rollout.started", true},
		{"rollout.*", "rollout.", true},
		{"rollout.*", "rollouts.started", false},
		{"rollout.*", "app.state", false},
		{"app.state", "app.state", true},
		{"app.state", "app.stated", false},
		{"app.state", "app.stat", false},
		{"*.failed", "app.failed", true},
		{"*.failed", "delivery.failed", true},
		{"*.failed", "app.failed.x", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"node.*,app.*", "app.installed", true},
		{"node.*,app.*", "node.down", true},
		{"node.*,app.*", "release.pushed", false},
		{"**", "x.y", true},
	} {
		globs, err := ParseEvents(tt.globs)
		if err != nil {
			t.Fatalf("ParseEvents(%q): %v", tt.globs, err)
		}
		if got := Matches(globs, tt.typ); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.globs, tt.typ, got, tt.want)
		}
	}
}

func TestParseEventsRefuses(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "want globs over event types"},
		{"rollout.*,", "want globs over event types"},
		{"Rollout.*", `'R' is not allowed`},
		{"rollout.?", `'?' is not allowed`},
		{"app state", `' ' is not allowed`},
		{strings.Repeat("a", MaxGlobLen+1), "longer than 64"},
		{manyGlobs(MaxGlobs + 1), "at most 16"},
	} {
		_, err := ParseEvents(tt.in)
		if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseEvents(%q) = %v; want an invalid-input error saying %q on one line", tt.in, err, tt.want)
		}
	}
	if got, err := ParseEvents(" rollout.* , app.state,rollout.*"); err != nil || strings.Join(got, " ") != "rollout.* app.state" {
		t.Errorf("ParseEvents with spaces and a repeat = %q, %v", got, err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"https://hooks.example.org/ferry", "http://127.0.0.1:8080/x?token=abc", "https://[::1]:443/"} {
		if got, err := CheckURL(ok); err != nil || got != ok {
			t.Errorf("CheckURL(%q) = %q, %v", ok, got, err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"", "needs a URL"},
		{"ftp://example.org/x", "want an http:// or https:// URL"},
		{"file:///etc/passwd", "want an http:// or https:// URL"},
		{"hooks.example.org/ferry", "want an http:// or https:// URL"},
		{"https://", "names no host"},
		{"https://:80/x", "names no host"},
		{"https://user:secret@hooks.example.org/", "carries credentials"},
		{"https://hooks.example.org/#frag", "fragment"},
		{"https://hooks.example.org/a b", "space or a control character"},
		{"https://hooks.example.org/\r\nX-Evil: 1", "space or a control character"},
		{"https://hooks.example.org/" + strings.Repeat("a", MaxURLLen), "at most 2048"},
		{"http://%zz/", "invalid webhook URL"},
	} {
		_, err := CheckURL(tt.in)
		if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("CheckURL(%q) = %v; want an invalid-input error saying %q on one line", tt.in, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret@") {
			t.Errorf("CheckURL(%q) repeats the credentials: %v", tt.in, err)
		}
	}
}

func manyGlobs(n int) string {
	var gs []string
	for i := range n {
		gs = append(gs, fmt.Sprintf("t%d.*", i))
	}
	return strings.Join(gs, ",")
}

// reference matches a glob by translating it to a regular expression.
func reference(g, s string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(g), `\*`, ".*") + "$"
	return regexp.MustCompile("(?s)" + re).MatchString(s)
}

// The globs come from operators over the API: parsing never panics, what it accepts is within
// bounds, and matching agrees with a regular expression.
func FuzzParseEvents(f *testing.F) {
	for _, s := range []string{"*", "rollout.*", "app.state,node.*", "a*b*c", "**.*", ",", "ROLL"} {
		f.Add(s, "rollout.started")
	}
	f.Fuzz(func(t *testing.T, in, typ string) {
		globs, err := ParseEvents(in)
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("ParseEvents(%q): %v is not an invalid-input error", in, err)
			}
			return
		}
		if len(globs) == 0 || len(globs) > MaxGlobs {
			t.Fatalf("ParseEvents(%q) = %d globs", in, len(globs))
		}
		want := false
		for _, g := range globs {
			if g == "" || len(g) > MaxGlobLen {
				t.Fatalf("ParseEvents(%q) accepted %q", in, g)
			}
			want = want || reference(g, typ)
		}
		if got := Matches(globs, typ); got != want {
			t.Fatalf("Matches(%q, %q) = %v, the regular expression says %v", globs, typ, got, want)
		}
	})
}

// Webhook URLs come from operators: checking never panics, and what it accepts is an http or
// https URL with a host, no credentials, no control characters, within bounds.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://hooks.example.org/ferry", "http://u:p@h/", "https://h/#x", "http://[::1]:80/", "javascript:alert(1)", "http://h/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := CheckURL(in)
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("CheckURL(%q): %q", in, err)
			}
			return
		}
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Hostname() == "" || p.User != nil || p.Fragment != "" ||
			len(u) > MaxURLLen || strings.IndexFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			t.Fatalf("CheckURL(%q) accepted %q", in, u)
		}
		if again, err := CheckURL(u); err != nil || again != u {
			t.Fatalf("CheckURL(%q) = %q, but that checks as %q, %v", in, u, again, err)
		}
	})
}
