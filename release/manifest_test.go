package release

import (
	"strings"
	"testing"
	"time"
)

const good = `app: hello
version: 1.4.0          # or "2:1.4.0" with an epoch
class: minor
processes:
  - name: web
    command: ["bin/hello", "--port", "8080"]
checks:
  - {name: http, http: "http://127.0.0.1:8080/healthz", interval: 10s}
  - {name: disk, exec: ["/usr/lib/nagios/plugins/check_disk", "-w", "10%", "-c", "5%", "-p", "/"]}
hooks: {post_install: ["bin/migrate"], pre_stop: [], post_start: []}
integrity: ["bin/**", "etc/*.conf"]
`

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.App != "hello" || m.Version != "1.4.0" || m.Class != ClassMinor || len(m.Processes) != 1 || m.Processes[0].Command[2] != "8080" ||
		len(m.Checks) != 2 || time.Duration(m.Checks[0].Interval) != 10*time.Second || m.Checks[1].Exec[0] != "/usr/lib/nagios/plugins/check_disk" ||
		m.Hooks.PostInstall[0] != "bin/migrate" || len(m.Integrity) != 2 {
		t.Fatalf("manifest = %+v", m)
	}
	if m, err := ParseManifest([]byte("app: hello\nversion: \"2:1.4.0\"\nclass: breaking\n")); err != nil || m.Version != "2:1.4.0" {
		t.Fatalf("epoch manifest: %+v %v", m, err)
	}
}

func TestManifestErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "empty"},
		{"not yaml", "app: [", "ferry.yaml"},
		{"unknown field", "app: hello\nversion: 1.0.0\nclass: minor\ncolour: red\n", "line 4: field colour not found"},
		{"bad app", "app: Hello_World\nversion: 1.0.0\nclass: minor\n", "line 1: app: invalid app name"},
		{"missing app", "version: 1.0.0\nclass: minor\n", "app: required"},
		{"bad version", "app: a\nversion: 1.0\nclass: minor\n", "line 2: version: invalid version"},
		{"bad class", "app: a\nversion: 1.0.0\nclass: huge\n", "line 3: class: invalid class"},
		{"empty command", "app: a\nversion: 1.0.0\nclass: minor\nprocesses:\n  - name: web\n    command: []\n", "line 6: processes.0.command: empty command"},
		{"dup process", "app: a\nversion: 1.0.0\nclass: minor\nprocesses:\n  - {name: w, command: [x]}\n  - {name: w, command: [y]}\n", "line 6: processes.1.name: duplicate process name"},
		{"dup check", "app: a\nversion: 1.0.0\nclass: minor\nchecks:\n  - {name: c, tcp: \"127.0.0.1:1\"}\n  - {name: c, tcp: \"127.0.0.1:2\"}\n", "duplicate check name"},
		{"two kinds", "app: a\nversion: 1.0.0\nclass: minor\nchecks:\n  - {name: c, tcp: \"x:1\", http: \"http://x\"}\n", "exactly one of"},
		{"bad interval", "app: a\nversion: 1.0.0\nclass: minor\nchecks:\n  - {name: c, tcp: \"x:1\", interval: soon}\n", "line 5: invalid duration"},
		{"escaping glob", "app: a\nversion: 1.0.0\nclass: minor\nintegrity: [\"../etc/passwd\"]\n", "integrity.0: invalid pattern"},
		{"two documents", "app: a\nversion: 1.0.0\nclass: minor\n---\napp: b\n", "more than one YAML document"},
		{"too big", "app: a\n#" + strings.Repeat("x", MaxManifestSize), "larger than"},
	}
	for _, c := range cases {
		_, err := ParseManifest([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line containing %q", c.name, err, c.want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("app: a\nversion: 1.0.0\nclass: minor\n"))
	f.Add([]byte("app: [\n"))
	f.Add([]byte("checks:\n  - {name: c, exec: []}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if _, verr := ParseVersion(m.Version); verr != nil {
			t.Fatalf("accepted bad version %q", m.Version)
		}
		for _, p := range m.Processes {
			if len(p.Command) == 0 {
				t.Fatal("accepted an empty command")
			}
		}
	})
}
