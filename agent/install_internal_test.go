package agent

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// Whatever a server sends, an assignment the agent accepts names paths inside its apps and
// downloads directories only.
func FuzzCheckAssignment(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	f.Add("hello", "1.4.0", sum, int64(10))
	f.Add("../etc", "1:1.0.0", sum, int64(0))
	f.Add("hello", "1.0.0/../../x", sum, int64(1))
	f.Add("hello", "1.0.0", "../../../../etc/passwd", int64(-1))
	f.Fuzz(func(t *testing.T, app, version, digest string, size int64) {
		a := api.Assignment{App: app, Version: version, SHA256: digest, Size: size}
		if _, err := checkAssignment(a); err != nil {
			return
		}
		root := "/data"
		in := &installer{dir: root}
		for _, p := range []string{
			filepath.Join(in.appDir(a.App), "releases", versionDir(a.Version)),
			filepath.Join(root, downloadsDir, a.SHA256+".part"),
		} {
			rel, err := filepath.Rel(root, p)
			if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) < 1 {
				t.Fatalf("accepted %+v names %s, outside %s", a, p, root)
			}
		}
	})
}

// What the agent reports is what the server accepts: printable, bounded.
func TestReportable(t *testing.T) {
	for in, want := range map[string]string{
		"plain error":            "plain error",
		"line\nbreak\x1b[2J":     "line break [2J",
		"bidi \u202eevil":        "bidi  evil",
		"bad \xff utf8":          "bad \uFFFD utf8",
		strings.Repeat("é", 600): strings.Repeat("é", 500),
	} {
		if got := reportable(in); got != want {
			t.Errorf("reportable(%q) = %q, want %q", in, got, want)
		}
	}
}
