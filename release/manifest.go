package release

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/labels"
	"gopkg.in/yaml.v3"
)

// ManifestName is the manifest's path at the root of a bundle.
const ManifestName = "ferry.yaml"

// MaxManifestSize bounds the manifest; a larger one is refused unread.
const MaxManifestSize = 1 << 20

// Defaults of what a manifest leaves out, and the bounds of what it may set.
const (
	DefaultMinHealthyTime  = 10 * time.Second
	DefaultHealthyDeadline = 5 * time.Minute
	MaxMinHealthyTime      = time.Hour
	MaxHealthyDeadline     = 24 * time.Hour

	DefaultRestartBurst  = 5 // restarts within DefaultRestartWindow before a crash loop
	MaxRestartBurst      = 100
	DefaultRestartWindow = time.Minute
	MinRestartWindow     = time.Second
	MaxRestartWindow     = 24 * time.Hour
	DefaultBackoffMax    = 30 * time.Second
	MinBackoffMax        = time.Second
	MaxBackoffMax        = time.Hour

	DefaultStopGrace = 10 * time.Second
	MaxStopGrace     = 10 * time.Minute

	MaxEnv      = 128      // variables per process
	MaxEnvBytes = 32 << 10 // per process, counted as NAME=VALUE
	MaxPorts    = 32
)

// ReservedEnvPrefix starts the names of the variables the agent sets; a manifest may not set
// them.
const ReservedEnvPrefix = "FERRY_"

// Release classes: how much care a rollout of this release needs.
const (
	ClassMinor    = "minor"
	ClassMajor    = "major"
	ClassBreaking = "breaking"
)

// Manifest is a bundle's ferry.yaml. ParseManifest fills in the defaults of what a manifest
// leaves out (Update, and each process's Restart and StopGrace), so readers see the values that
// apply.
type Manifest struct {
	App     string `yaml:"app" json:"app"`
	Version string `yaml:"version" json:"version"`
	Class   string `yaml:"class" json:"class"`
	// Ports are named ports the agent passes to processes and checks as FERRY_PORT_<NAME>
	// (see PortVar), in the environment and as ${FERRY_PORT_<NAME>} in commands and checks.
	Ports     []Port    `yaml:"ports" json:"ports,omitempty"`
	Processes []Process `yaml:"processes" json:"processes,omitempty"`
	Update    Update    `yaml:"update" json:"update"`
	Checks    []Check   `yaml:"checks" json:"checks,omitempty"`
	Hooks     Hooks     `yaml:"hooks" json:"hooks"`
	Integrity []string  `yaml:"integrity" json:"integrity,omitempty"`
}

// Port is a named port. Without a fixed Port the agent picks a free one on each node, so that
// many nodes can share a machine.
type Port struct {
	Name string `yaml:"name" json:"name"`
	Port int    `yaml:"port" json:"port,omitempty"`
}

// Update says when a newly started release counts as healthy: its processes stayed up for
// MinHealthyTime and its checks passed, both within HealthyDeadline of the start; otherwise
// the agent rolls back. A rollout's wave may override both.
type Update struct {
	MinHealthyTime  Duration `yaml:"min_healthy_time" json:"min_healthy_time"`
	HealthyDeadline Duration `yaml:"healthy_deadline" json:"healthy_deadline"`
}

// Process is a supervised process, restarted when it dies. It runs in the release directory.
type Process struct {
	Name    string   `yaml:"name" json:"name"`
	Command []string `yaml:"command" json:"command"`
	// Env is added to the environment the agent gives (which holds the FERRY_* variables).
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// User is the Unix user to run as, when the agent runs as root.
	User    string  `yaml:"user" json:"user,omitempty"`
	Restart Restart `yaml:"restart" json:"restart"`
	// StopGrace is how long a stop waits after SIGTERM before SIGKILL.
	StopGrace Duration `yaml:"stop_grace" json:"stop_grace"`
}

// Restart limits how a process that keeps dying is restarted: the first restart is at once,
// later ones wait longer and longer, at most BackoffMax; more than Burst restarts within
// Window is a crash loop, which the agent reports.
type Restart struct {
	Burst      int      `yaml:"burst" json:"burst"`
	Window     Duration `yaml:"window" json:"window"`
	BackoffMax Duration `yaml:"backoff_max" json:"backoff_max"`
}

// Check is a health probe. Exactly one of HTTP, TCP or Exec is set; Exec speaks the Nagios
// plugin protocol (exit 0 ok, 1 warning, 2 critical, 3 unknown). All three may hold
// ${FERRY_PORT_<NAME>} references.
type Check struct {
	Name     string   `yaml:"name" json:"name"`
	HTTP     string   `yaml:"http" json:"http,omitempty"`
	TCP      string   `yaml:"tcp" json:"tcp,omitempty"`
	Exec     []string `yaml:"exec" json:"exec,omitempty"`
	Interval Duration `yaml:"interval" json:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Hooks are commands run around an install.
type Hooks struct {
	PostInstall []string `yaml:"post_install" json:"post_install,omitempty"`
	PreStop     []string `yaml:"pre_stop" json:"pre_stop,omitempty"`
	PostStart   []string `yaml:"post_start" json:"post_start,omitempty"`
}

// Duration is a Go duration written as "10s".
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 10s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid duration %q: want a duration like 10s", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// ManifestError is a manifest problem, naming the field and its line.
type ManifestError struct {
	Line  int
	Field string
	Msg   string
}

func (e *ManifestError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s line %d: %s: %s", ManifestName, e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", ManifestName, e.Field, e.Msg)
}

// ParseManifest reads and validates a manifest strictly: unknown fields, a second document,
// bad names and versions, empty commands, programs outside the release, references to ports
// not declared, limits out of bounds, oversized environments and duplicate names are refused.
// What the manifest leaves out gets its default.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", ManifestName, MaxManifestSize)
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s is empty", ManifestName)
		}
		return nil, fmt.Errorf("%s: %s", ManifestName, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: holds more than one YAML document", ManifestName)
	}
	var m Manifest
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	if err := strict.Decode(&m); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		msg = strings.ReplaceAll(msg, " in type release.", " in ")
		return nil, fmt.Errorf("%s %s", ManifestName, strings.ReplaceAll(msg, "\n  ", "; "))
	}
	if err := m.validate(&root); err != nil {
		return nil, err
	}
	return &m, nil
}

// validate checks what the YAML types cannot and fills in defaults; root gives the lines for
// messages and tells a field left out from one set to zero.
func (m *Manifest) validate(root *yaml.Node) error {
	at := func(field string, msg string, args ...any) error {
		return &ManifestError{Line: lineOf(root, field), Field: field, Msg: fmt.Sprintf(msg, args...)}
	}
	set := func(field string) bool { return find(root, field) != nil }
	if m.App == "" {
		return at("app", "required")
	}
	if err := labels.CheckName("app name", m.App); err != nil {
		return at("app", "%v", err)
	}
	if m.Version == "" {
		return at("version", "required")
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return at("version", "%v", err)
	}
	switch m.Class {
	case ClassMinor, ClassMajor, ClassBreaking:
	case "":
		return at("class", "required: minor, major or breaking")
	default:
		return at("class", "invalid class %q: want minor, major or breaking", m.Class)
	}

	if len(m.Ports) > MaxPorts {
		return at("ports", "%d ports; at most %d", len(m.Ports), MaxPorts)
	}
	vars := map[string]bool{}
	fixed := map[int]string{}
	for i, p := range m.Ports {
		f := fmt.Sprintf("ports.%d", i)
		if err := labels.CheckName("port name", p.Name); err != nil {
			return at(f+".name", "%v", err)
		}
		if vars[PortVar(p.Name)] {
			return at(f+".name", "duplicate port name %q", p.Name)
		}
		vars[PortVar(p.Name)] = true
		if set(f + ".port") {
			if p.Port < 1 || p.Port > 65535 {
				return at(f+".port", "invalid port %d: want 1-65535, or no port for one the agent picks", p.Port)
			}
			if other, dup := fixed[p.Port]; dup {
				return at(f+".port", "port %d is already port %q's", p.Port, other)
			}
			fixed[p.Port] = p.Name
		}
	}
	// refs checks that every ${...} in s names a declared port.
	refs := func(field, s string) error {
		var unknown string
		_, err := expand(s, func(name string) (string, bool) {
			unknown = name
			return "", vars[name]
		})
		switch port, isPort := strings.CutPrefix(unknown, PortVarPrefix); {
		case err == nil:
			return nil
		case !strings.HasPrefix(err.Error(), "unknown variable"):
			return at(field, "%v", err)
		case isPort:
			return at(field, "${%s} names a port that ports: does not declare: add {name: %s} there", unknown, strings.ToLower(strings.ReplaceAll(port, "_", "-")))
		default:
			return at(field, "unknown variable ${%s}: only ${%sNAME} of a declared port can be used; write $${ for a literal ${", unknown, PortVarPrefix)
		}
	}
	command := func(field string, cmd []string) error {
		if err := checkCommand(cmd); err != nil {
			return at(field, "%v", err)
		}
		for _, a := range cmd {
			if err := refs(field, a); err != nil {
				return err
			}
		}
		return nil
	}

	seen := map[string]bool{}
	for i := range m.Processes {
		p := &m.Processes[i]
		f := fmt.Sprintf("processes.%d", i)
		if err := labels.CheckName("process name", p.Name); err != nil {
			return at(f+".name", "%v", err)
		}
		if seen[p.Name] {
			return at(f+".name", "duplicate process name %q", p.Name)
		}
		seen[p.Name] = true
		if err := command(f+".command", p.Command); err != nil {
			return err
		}
		if err := checkEnv(p.Env, at, refs, f+".env"); err != nil {
			return err
		}
		if p.User != "" && !userName.MatchString(p.User) {
			return at(f+".user", "invalid user name %q: want a Unix user name (lower-case letters, digits, '_' and '-', at most 32, not starting with a digit or '-')", p.User)
		}
		r := &p.Restart
		if !set(f + ".restart.burst") {
			r.Burst = DefaultRestartBurst
		} else if r.Burst < 1 || r.Burst > MaxRestartBurst {
			return at(f+".restart.burst", "%d restarts: want 1-%d", r.Burst, MaxRestartBurst)
		}
		if err := bounded(&r.Window, set(f+".restart.window"), DefaultRestartWindow, MinRestartWindow, MaxRestartWindow); err != nil {
			return at(f+".restart.window", "%v", err)
		}
		if err := bounded(&r.BackoffMax, set(f+".restart.backoff_max"), DefaultBackoffMax, MinBackoffMax, MaxBackoffMax); err != nil {
			return at(f+".restart.backoff_max", "%v", err)
		}
		if err := bounded(&p.StopGrace, set(f+".stop_grace"), DefaultStopGrace, 0, MaxStopGrace); err != nil {
			return at(f+".stop_grace", "%v", err)
		}
	}

	if err := bounded(&m.Update.MinHealthyTime, set("update.min_healthy_time"), DefaultMinHealthyTime, 0, MaxMinHealthyTime); err != nil {
		return at("update.min_healthy_time", "%v", err)
	}
	if err := bounded(&m.Update.HealthyDeadline, set("update.healthy_deadline"), DefaultHealthyDeadline, time.Second, MaxHealthyDeadline); err != nil {
		return at("update.healthy_deadline", "%v", err)
	}
	if m.Update.MinHealthyTime > m.Update.HealthyDeadline {
		return at("update.min_healthy_time", "%v is longer than healthy_deadline %v: the processes could never stay up long enough",
			time.Duration(m.Update.MinHealthyTime), time.Duration(m.Update.HealthyDeadline))
	}

	seen = map[string]bool{}
	for i, c := range m.Checks {
		f := fmt.Sprintf("checks.%d", i)
		if err := labels.CheckName("check name", c.Name); err != nil {
			return at(f+".name", "%v", err)
		}
		if seen[c.Name] {
			return at(f+".name", "duplicate check name %q", c.Name)
		}
		seen[c.Name] = true
		kinds := 0
		for _, set := range []bool{c.HTTP != "", c.TCP != "", c.Exec != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return at(f, "give exactly one of http, tcp or exec")
		}
		// References are checked, then stood in for by a port number, so the shape of what
		// the agent will get is checked too.
		sample := func(s string) string {
			v, _ := expand(s, func(string) (string, bool) { return "1", true })
			return v
		}
		switch {
		case c.HTTP != "":
			if err := refs(f+".http", c.HTTP); err != nil {
				return err
			}
			if u, err := url.Parse(sample(c.HTTP)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return at(f+".http", "want an http:// or https:// URL")
			}
		case c.TCP != "":
			if err := refs(f+".tcp", c.TCP); err != nil {
				return err
			}
			if _, port, err := net.SplitHostPort(sample(c.TCP)); err != nil || port == "" {
				return at(f+".tcp", "want host:port, such as 127.0.0.1:${%sHTTP}", PortVarPrefix)
			}
		default:
			if err := command(f+".exec", c.Exec); err != nil {
				return err
			}
		}
	}
	for _, h := range []struct {
		field string
		cmd   []string
	}{{"hooks.post_install", m.Hooks.PostInstall}, {"hooks.pre_stop", m.Hooks.PreStop}, {"hooks.post_start", m.Hooks.PostStart}} {
		if len(h.cmd) > 0 {
			if err := command(h.field, h.cmd); err != nil {
				return err
			}
		}
	}
	for i, g := range m.Integrity {
		if _, err := path.Match(g, ""); err != nil || g == "" || strings.HasPrefix(g, "/") || strings.Contains("/"+g+"/", "/../") {
			return at(fmt.Sprintf("integrity.%d", i), "invalid pattern %q: want a relative glob inside the bundle", g)
		}
	}
	return nil
}

// userName is a Unix user name as useradd takes it by default.
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// bounded fills in def when the field was left out, or checks that the value set lies in
// [lo, hi].
func bounded(d *Duration, set bool, def, lo, hi time.Duration) error {
	if !set {
		*d = Duration(def)
		return nil
	}
	if v := time.Duration(*d); v < lo || v > hi {
		return fmt.Errorf("%v is out of bounds: want %v to %v", v, lo, hi)
	}
	return nil
}

// checkEnv checks a process's variables: names, the reserved prefix, count and size.
func checkEnv(env map[string]string, at func(string, string, ...any) error, refs func(string, string) error, field string) error {
	if len(env) > MaxEnv {
		return at(field, "%d variables; at most %d", len(env), MaxEnv)
	}
	names := make([]string, 0, len(env))
	size := 0
	for k, v := range env {
		names = append(names, k)
		size += len(k) + 1 + len(v)
	}
	if size > MaxEnvBytes {
		return at(field, "%d bytes of variables; at most %d", size, MaxEnvBytes)
	}
	sort.Strings(names)
	for _, k := range names {
		f := field + "." + k
		if !varName.MatchString(k) || len(k) > 256 {
			return at(f, "invalid variable name %q: want letters, digits and '_', not starting with a digit", k)
		}
		if strings.HasPrefix(strings.ToUpper(k), ReservedEnvPrefix) {
			return at(f, "%s is reserved: the agent sets the %s* variables", k, ReservedEnvPrefix)
		}
		if strings.ContainsRune(env[k], 0) {
			return at(f, "value holds a NUL byte")
		}
		if err := refs(f, env[k]); err != nil {
			return err
		}
	}
	return nil
}

func checkCommand(cmd []string) error {
	if len(cmd) == 0 || strings.TrimSpace(cmd[0]) == "" {
		return errors.New("empty command")
	}
	for _, a := range cmd {
		if strings.ContainsRune(a, 0) {
			return errors.New("command holds a NUL byte")
		}
	}
	// A relative program runs from the release directory; one that climbs out of it would run
	// whatever lies beside the release. Absolute system paths (/bin/sh) are fine.
	if prog := cmd[0]; !path.IsAbs(prog) {
		if c := path.Clean(prog); c == ".." || strings.HasPrefix(c, "../") {
			return fmt.Errorf("program %q leaves the release directory: use a path inside the release (bin/app) or an absolute one (/bin/sh)", prog)
		}
	}
	return nil
}

// find returns the node of a dotted field path ("update.min_healthy_time"), nil if absent. It
// sees through aliases and merge keys, as the decoder does.
func find(root *yaml.Node, field string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, part := range strings.Split(field, ".") {
		n = unalias(n)
		switch n.Kind {
		case yaml.MappingNode:
			n = child(n, part)
		case yaml.SequenceNode:
			idx, err := strconv.Atoi(part)
			if err != nil || idx < 0 || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
		default:
			return nil
		}
		if n == nil {
			return nil
		}
	}
	return n
}

func unalias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// child returns the value of key in mapping m: its own, or else one merged in with <<.
func child(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Value == key && k.ShortTag() != "!!merge" {
			return m.Content[i+1]
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].ShortTag() != "!!merge" {
			continue
		}
		merged := []*yaml.Node{unalias(m.Content[i+1])}
		if merged[0].Kind == yaml.SequenceNode {
			merged = merged[0].Content
		}
		for _, mm := range merged {
			if mm = unalias(mm); mm.Kind == yaml.MappingNode {
				if v := child(mm, key); v != nil {
					return v
				}
			}
		}
	}
	return nil
}

// lineOf finds the line of a dotted field path ("checks.1.name") in the document; 0 if absent.
func lineOf(root *yaml.Node, field string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(field, ".") {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line, next = n.Content[i].Line, n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			var idx int
			if _, err := fmt.Sscanf(part, "%d", &idx); err == nil && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}
