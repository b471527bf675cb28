package release

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/ferryhq/ferry/labels"
	"gopkg.in/yaml.v3"
)

// ManifestName is the manifest's path at the root of a bundle.
const ManifestName = "ferry.yaml"

// MaxManifestSize bounds the manifest; a larger one is refused unread.
const MaxManifestSize = 1 << 20

// Release classes: how much care a rollout of this release needs.
const (
	ClassMinor    = "minor"
	ClassMajor    = "major"
	ClassBreaking = "breaking"
)

// Manifest is a bundle's ferry.yaml.
type Manifest struct {
	App       string    `yaml:"app" json:"app"`
	Version   string    `yaml:"version" json:"version"`
	Class     string    `yaml:"class" json:"class"`
	Processes []Process `yaml:"processes" json:"processes,omitempty"`
	Checks    []Check   `yaml:"checks" json:"checks,omitempty"`
	Hooks     Hooks     `yaml:"hooks" json:"hooks"`
	Integrity []string  `yaml:"integrity" json:"integrity,omitempty"`
}

// Process is a supervised process, restarted when it dies.
type Process struct {
	Name    string   `yaml:"name" json:"name"`
	Command []string `yaml:"command" json:"command"`
}

// Check is a health probe. Exactly one of HTTP, TCP or Exec is set; Exec speaks the Nagios
// plugin protocol (exit 0 ok, 1 warning, 2 critical, 3 unknown).
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
// bad names and versions, empty commands and duplicate names are refused.
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

// validate checks what the YAML types cannot; root gives the lines for messages.
func (m *Manifest) validate(root *yaml.Node) error {
	at := func(field string, msg string, args ...any) error {
		return &ManifestError{Line: lineOf(root, field), Field: field, Msg: fmt.Sprintf(msg, args...)}
	}
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
	seen := map[string]bool{}
	for i, p := range m.Processes {
		f := fmt.Sprintf("processes.%d", i)
		if err := labels.CheckName("process name", p.Name); err != nil {
			return at(f+".name", "%v", err)
		}
		if seen[p.Name] {
			return at(f+".name", "duplicate process name %q", p.Name)
		}
		seen[p.Name] = true
		if err := checkCommand(p.Command); err != nil {
			return at(f+".command", "%v", err)
		}
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
		if c.HTTP != "" && !strings.HasPrefix(c.HTTP, "http://") && !strings.HasPrefix(c.HTTP, "https://") {
			return at(f+".http", "want an http:// or https:// URL")
		}
		if c.Exec != nil {
			if err := checkCommand(c.Exec); err != nil {
				return at(f+".exec", "%v", err)
			}
		}
	}
	for name, cmd := range map[string][]string{"hooks.post_install": m.Hooks.PostInstall, "hooks.pre_stop": m.Hooks.PreStop, "hooks.post_start": m.Hooks.PostStart} {
		if len(cmd) > 0 {
			if err := checkCommand(cmd); err != nil {
				return at(name, "%v", err)
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

func checkCommand(cmd []string) error {
	if len(cmd) == 0 || strings.TrimSpace(cmd[0]) == "" {
		return errors.New("empty command")
	}
	for _, a := range cmd {
		if strings.ContainsRune(a, 0) {
			return errors.New("command holds a NUL byte")
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
