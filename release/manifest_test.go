package release

import (
	"fmt"
	"path"
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

const full = `app: hello
version: 1.4.0
class: minor
ports: [{name: http}, {name: admin-api, port: 8080}]
processes:
  - name: web
    command: ["bin/hello", "--port", "${FERRY_PORT_HTTP}", "--admin", "127.0.0.1:${FERRY_PORT_ADMIN_API}"]
    env: {GREETING: "hello there", LISTEN: "127.0.0.1:${FERRY_PORT_HTTP}", _X1: 5}
    user: www-data
    restart: {burst: 3, window: 30s, backoff_max: 1m}
    stop_grace: 20s
  - name: worker
    command: ["/bin/sh", "-c", "exec ./bin/worker $${NOT_EXPANDED} $HOME"]
update: {min_healthy_time: 5s, healthy_deadline: 2m}
checks:
  - {name: http, http: "http://127.0.0.1:${FERRY_PORT_HTTP}/healthz", interval: 10s}
  - {name: admin, tcp: "127.0.0.1:${FERRY_PORT_ADMIN_API}"}
  - {name: disk, exec: ["/usr/lib/nagios/plugins/check_disk", "-w", "10%", "-c", "5%", "-p", "/"]}
  - {name: local, exec: ["./bin/../bin/check", "--port=${FERRY_PORT_HTTP}"]}
hooks: {post_install: ["bin/migrate"], pre_stop: [], post_start: ["bin/warm", "${FERRY_PORT_HTTP}"]}
`

func TestParseManifestNewFields(t *testing.T) {
	m, err := ParseManifest([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	web, worker := m.Processes[0], m.Processes[1]
	if len(m.Ports) != 2 || m.Ports[0] != (Port{Name: "http"}) || m.Ports[1] != (Port{Name: "admin-api", Port: 8080}) {
		t.Errorf("ports %+v", m.Ports)
	}
	if web.Env["GREETING"] != "hello there" || web.Env["_X1"] != "5" || web.User != "www-data" ||
		web.Restart != (Restart{Burst: 3, Window: Duration(30 * time.Second), BackoffMax: Duration(time.Minute)}) || web.StopGrace != Duration(20*time.Second) {
		t.Errorf("web %+v", web)
	}
	// What a manifest leaves out gets the defaults.
	if worker.Restart != (Restart{Burst: DefaultRestartBurst, Window: Duration(DefaultRestartWindow), BackoffMax: Duration(DefaultBackoffMax)}) ||
		worker.StopGrace != Duration(DefaultStopGrace) || worker.User != "" || worker.Env != nil {
		t.Errorf("worker %+v", worker)
	}
	if m.Update != (Update{MinHealthyTime: Duration(5 * time.Second), HealthyDeadline: Duration(2 * time.Minute)}) {
		t.Errorf("update %+v", m.Update)
	}
	m, err = ParseManifest([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Update != (Update{MinHealthyTime: Duration(10 * time.Second), HealthyDeadline: Duration(5 * time.Minute)}) ||
		m.Processes[0].Restart.Burst != 5 || m.Processes[0].StopGrace != Duration(10*time.Second) {
		t.Errorf("defaults: %+v %+v", m.Update, m.Processes[0])
	}
	// Zero is a value, not a default, where zero means something.
	m, err = ParseManifest([]byte("app: a\nversion: 1.0.0\nclass: minor\nupdate: {min_healthy_time: 0s}\nprocesses:\n  - {name: w, command: [x], stop_grace: 0s}\n"))
	if err != nil || m.Update.MinHealthyTime != 0 || m.Update.HealthyDeadline != Duration(DefaultHealthyDeadline) || m.Processes[0].StopGrace != 0 {
		t.Errorf("explicit zeros: %+v %v", m, err)
	}
	// Values shared through anchors, aliases and merge keys are values set, not defaults.
	m, err = ParseManifest([]byte(`app: a
version: 1.0.0
class: minor
processes:
  - {name: a, command: [x], restart: &r {burst: 50, window: 10s}}
  - {name: b, command: [y], restart: *r}
  - {name: c, command: [z], restart: {<<: *r, backoff_max: 2s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Processes {
		if p.Restart.Burst != 50 || p.Restart.Window != Duration(10*time.Second) {
			t.Errorf("%s: %+v", p.Name, p.Restart)
		}
	}
	if m.Processes[1].Restart.BackoffMax != Duration(DefaultBackoffMax) || m.Processes[2].Restart.BackoffMax != Duration(2*time.Second) {
		t.Errorf("backoff_max %+v", m.Processes)
	}
}

// Hostile and mistaken manifests are refused with the field and its line.
func TestManifestNewFieldErrors(t *testing.T) {
	const head = "app: a\nversion: 1.0.0\nclass: minor\n"
	proc := func(extra string) string {
		return head + "processes:\n  - name: web\n    command: [bin/web]\n" + extra
	}
	var hugeEnv, manyEnv strings.Builder
	hugeEnv.WriteString("    env:\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&hugeEnv, "      V%d: %q\n", i, strings.Repeat("x", 1000))
	}
	manyEnv.WriteString("    env:\n")
	for i := 0; i <= MaxEnv; i++ {
		fmt.Fprintf(&manyEnv, "      V%d: x\n", i)
	}
	cases := []struct{ name, yaml, want string }{
		{"escape", head + "processes:\n  - {name: w, command: [../../bin/x]}\n", `line 5: processes.0.command: program "../../bin/x" leaves the release directory`},
		{"escape inside", head + "processes:\n  - {name: w, command: [bin/../../x]}\n", "leaves the release directory"},
		{"escape dotdot", head + "processes:\n  - {name: w, command: [..]}\n", "leaves the release directory"},
		{"escape hook", head + "hooks: {post_install: [\"./../migrate\"]}\n", "line 4: hooks.post_install: program"},
		{"escape check", head + "checks:\n  - {name: c, exec: [../check]}\n", "line 5: checks.0.exec: program"},
		{"huge env", proc(hugeEnv.String()), "line 7: processes.0.env: 40"},
		{"many env", proc(manyEnv.String()), "129 variables; at most 128"},
		{"env name", proc("    env: {1X: y}\n"), `line 7: processes.0.env.1X: invalid variable name "1X"`},
		{"env dash", proc("    env: {A-B: y}\n"), `invalid variable name "A-B"`},
		{"env reserved", proc("    env: {FERRY_PORT_HTTP: \"1\"}\n"), "line 7: processes.0.env.FERRY_PORT_HTTP: FERRY_PORT_HTTP is reserved"},
		{"env reserved lower", proc("    env: {ferry_token: x}\n"), "is reserved"},
		{"env NUL", proc("    env: {A: \"x\\0y\"}\n"), "NUL byte"},
		{"env ref", proc("    env: {A: \"${FERRY_PORT_HTTP}\"}\n"), "${FERRY_PORT_HTTP} names a port"},
		{"user", proc("    user: Root\n"), `line 7: processes.0.user: invalid user name "Root"`},
		{"user long", proc("    user: " + strings.Repeat("u", 33) + "\n"), "invalid user name"},
		{"user dash", proc("    user: -x\n"), "invalid user name"},
		{"burst", proc("    restart: {burst: 1000000}\n"), "line 7: processes.0.restart.burst: 1000000 restarts: want 1-100"},
		{"burst zero", proc("    restart: {burst: 0}\n"), "0 restarts: want 1-100"},
		{"window", proc("    restart: {window: 0s}\n"), "processes.0.restart.window: 0s is out of bounds: want 1s to 24h0m0s"},
		{"window long", proc("    restart: {window: 10000h}\n"), "restart.window: 10000h0m0s is out of bounds"},
		{"backoff", proc("    restart: {backoff_max: 1ms}\n"), "restart.backoff_max: 1ms is out of bounds"},
		{"restart unknown", proc("    restart: {forever: true}\n"), "field forever not found"},
		{"stop grace", proc("    stop_grace: 2h\n"), "line 7: processes.0.stop_grace: 2h0m0s is out of bounds: want 0s to 10m0s"},
		{"deadline", head + "update: {healthy_deadline: 48h}\n", "line 4: update.healthy_deadline: 48h0m0s is out of bounds"},
		{"deadline zero", head + "update: {healthy_deadline: 0s}\n", "update.healthy_deadline: 0s is out of bounds"},
		{"min above deadline", head + "update: {min_healthy_time: 2m, healthy_deadline: 1m}\n", "update.min_healthy_time: 2m0s is longer than healthy_deadline 1m0s"},
		{"min huge", head + "update:\n  min_healthy_time: 2h\n", "line 5: update.min_healthy_time: 2h0m0s is out of bounds"},
		{"update unknown", head + "update: {max_parallel: 2}\n", "field max_parallel not found"},
		{"port name", head + "ports: [{name: HTTP}]\n", `line 4: ports.0.name: invalid port name "HTTP"`},
		{"port dup", head + "ports:\n  - {name: http}\n  - {name: http}\n", `line 6: ports.1.name: duplicate port name "http"`},
		{"port range", head + "ports: [{name: http, port: 70000}]\n", "ports.0.port: invalid port 70000"},
		{"port zero", head + "ports: [{name: http, port: 0}]\n", "invalid port 0"},
		{"port fixed dup", head + "ports: [{name: a, port: 80}, {name: b, port: 80}]\n", `ports.1.port: port 80 is already port "a"'s`},
		{"undeclared port", head + "processes:\n  - {name: w, command: [bin/w, \"${FERRY_PORT_HTTP}\"]}\n", "line 5: processes.0.command: ${FERRY_PORT_HTTP} names a port that ports: does not declare: add {name: http} there"},
		{"other var", head + "ports: [{name: http}]\nprocesses:\n  - {name: w, command: [bin/w, \"${HOME}\"]}\n", "unknown variable ${HOME}: only ${FERRY_PORT_NAME}"},
		{"unclosed ref", head + "ports: [{name: http}]\nprocesses:\n  - {name: w, command: [bin/w, \"${FERRY_PORT_HTTP\"]}\n", "unclosed ${"},
		{"check http ref", head + "checks:\n  - {name: c, http: \"http://127.0.0.1:${FERRY_PORT_WEB}/\"}\n", "line 5: checks.0.http: ${FERRY_PORT_WEB} names a port"},
		{"check tcp ref", head + "checks:\n  - {name: c, tcp: \"127.0.0.1:${FERRY_PORT_WEB}\"}\n", "checks.0.tcp: ${FERRY_PORT_WEB} names a port"},
		{"check exec ref", head + "checks:\n  - {name: c, exec: [/bin/check, \"${FERRY_PORT_WEB}\"]}\n", "checks.0.exec: ${FERRY_PORT_WEB} names a port"},
		{"hook ref", head + "hooks: {post_start: [bin/x, \"${FERRY_PORT_WEB}\"]}\n", "hooks.post_start: ${FERRY_PORT_WEB} names a port"},
		{"check tcp shape", head + "checks:\n  - {name: c, tcp: \"localhost\"}\n", "checks.0.tcp: want host:port"},
		{"check http shape", head + "checks:\n  - {name: c, http: \"http://\"}\n", "checks.0.http: want an http"},
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
	f.Add([]byte(full))
	f.Add([]byte("app: a\nversion: 1.0.0\nclass: minor\n"))
	f.Add([]byte("app: [\n"))
	f.Add([]byte("checks:\n  - {name: c, exec: []}\n"))
	f.Add([]byte("app: a\nversion: 1.0.0\nclass: minor\nports: [{name: x, port: 1}]\nprocesses:\n  - {name: w, command: [../x, \"$${FERRY_PORT_X}\"], env: {A: B}, restart: &r {burst: 0}}\n  - {name: v, command: [y], restart: {<<: *r}}\n"))
	f.Add([]byte("app: a\nversion: 1.0.0\nclass: minor\nupdate: {min_healthy_time: 1h, healthy_deadline: 1h}\nprocesses:\n  - {name: w, command: [x], user: nobody, stop_grace: 0s}\n"))
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
		vars := map[string]string{}
		for _, p := range m.Ports {
			vars[PortVar(p.Name)] = "1"
		}
		expands := func(ss ...string) {
			for _, s := range ss {
				if _, err := Expand(s, vars); err != nil {
					t.Fatalf("accepted %q, which does not expand: %v", s, err)
				}
			}
		}
		inside := func(cmd []string) {
			if c := path.Clean(cmd[0]); !path.IsAbs(c) && (c == ".." || strings.HasPrefix(c, "../")) {
				t.Fatalf("accepted program %q", cmd[0])
			}
			expands(cmd...)
		}
		if m.Update.HealthyDeadline <= 0 || m.Update.HealthyDeadline > Duration(MaxHealthyDeadline) || m.Update.MinHealthyTime > m.Update.HealthyDeadline {
			t.Fatalf("accepted update %+v", m.Update)
		}
		for _, p := range m.Processes {
			if len(p.Command) == 0 {
				t.Fatal("accepted an empty command")
			}
			inside(p.Command)
			if len(p.Env) > MaxEnv || p.Restart.Burst < 1 || p.Restart.Burst > MaxRestartBurst || p.Restart.Window < Duration(MinRestartWindow) ||
				p.Restart.BackoffMax > Duration(MaxBackoffMax) || p.StopGrace > Duration(MaxStopGrace) {
				t.Fatalf("accepted process %+v", p)
			}
			for k, v := range p.Env {
				if strings.HasPrefix(strings.ToUpper(k), ReservedEnvPrefix) {
					t.Fatalf("accepted reserved %s", k)
				}
				expands(v)
			}
		}
		for _, c := range m.Checks {
			expands(c.HTTP, c.TCP)
			if c.Exec != nil {
				inside(c.Exec)
			}
		}
	})
}
