package rollout

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/labels"
	"gopkg.in/yaml.v3"
)

// The fields a policy file may hold, at each level, in the order its messages list them.
var (
	policyFields   = []string{"name", "on_failure", "leftover", "waves"}
	waveFields     = []string{"name", "selector", "percent", "optional", "max_parallel", "max_unavailable_per_site", "min_healthy_time", "healthy_deadline", "failure_threshold", "soak", "approval", "acks", "feedback_window", "feedback_remind", "unreachable_deadline"}
	approvalFields = []string{"count", "role"}
	ackFields      = []string{"deadline", "remind", "escalate"}
)

// ParsePolicy reads a policy from YAML strictly: an unknown field, a value of the wrong kind,
// an impossible share or duration, a wave without a name or with another's, no waves or a bad
// selector is refused with one line naming the field and its line in source (the file name,
// for messages). What the file leaves out gets its default.
func ParsePolicy(source string, b []byte) (*Policy, error) {
	p := &Policy{source: source, lines: map[string]int{}}
	if len(b) > MaxPolicySize {
		return nil, &PolicyError{Source: source, Msg: fmt.Sprintf("%d bytes; a policy is at most %d", len(b), MaxPolicySize)}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &PolicyError{Source: source, Msg: "empty: a policy needs a name and waves"}
		}
		return nil, yamlError(source, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &PolicyError{Source: source, Line: extra.Line, Msg: "holds more than one YAML document: give one policy per file"}
	}
	if len(root.Content) == 0 {
		return nil, &PolicyError{Source: source, Msg: "empty: a policy needs a name and waves"}
	}
	d := &decoder{p: p, budget: maxEntries}
	if err := d.policy(root.Content[0]); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// plainKey is a key a message may name as it is: what a field's name could be.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// maxEntries bounds the mapping entries a decoder visits, merge keys expanded: aliases of
// aliases could otherwise make a small file cost exponential work.
const maxEntries = 10_000

// yamlLine finds the line in yaml.v3's syntax errors: "yaml: line 3: did not find expected key".
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func yamlError(source string, err error) error {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if len(msg) > 200 { // yaml.v3 quotes what it could not read, anchor names included
		msg = msg[:200] + "..."
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &PolicyError{Source: source, Line: line, Msg: "not YAML: " + msg[len(m[0]):]}
	}
	return &PolicyError{Source: source, Msg: "not YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decoder walks a policy's YAML nodes by hand, to name the field and line of every mistake.
type decoder struct {
	p      *Policy
	budget int
}

func (d *decoder) at(n *yaml.Node, field, format string, args ...any) error {
	return &PolicyError{Source: d.p.source, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// entry is one key of a mapping with its value.
type entry struct {
	key  string
	path string // the field path: waves[1].soak
	val  *yaml.Node
}

// mapping returns the entries of the mapping n, at field path, in order; keys merged in with
// << come after the mapping's own and never replace them. Anything but a mapping, a key not in
// known and a key given twice are refused. The line of every key is recorded.
func (d *decoder) mapping(n *yaml.Node, path string, known []string) ([]entry, error) {
	n = unalias(n)
	if n.Kind != yaml.MappingNode {
		what := "policy"
		if path != "" {
			what = path
		}
		return nil, d.at(n, path, "want a mapping for the %s, with %s", what, strings.Join(known, ", "))
	}
	var out []entry
	var merged []*yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if d.budget--; d.budget < 0 {
			return nil, d.at(n, path, "too many fields once aliases are expanded")
		}
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			merged = append(merged, v)
			continue
		}
		field := join(path, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode || !plainKey.MatchString(k.Value):
			return nil, d.at(k, path, "unknown field %s; want one of %s", labels.Quote(k.Value), strings.Join(known, ", "))
		case !slices.Contains(known, k.Value):
			return nil, d.at(k, field, "unknown field; want one of %s", strings.Join(known, ", "))
		case seen[k.Value]:
			return nil, d.at(k, field, "given twice")
		}
		seen[k.Value] = true
		if _, ok := d.p.lines[field]; !ok { // a mapping's own key comes before one merged in
			d.p.lines[field] = k.Line
		}
		out = append(out, entry{k.Value, field, v})
	}
	for _, m := range merged {
		m = unalias(m)
		from := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			from = m.Content
		}
		for _, f := range from {
			es, err := d.mapping(f, path, known)
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
		}
	}
	return out, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func unalias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// scalar is the text of a scalar value; want says what is expected when it is not one.
func (d *decoder) scalar(n *yaml.Node, field, want string) (string, error) {
	n = unalias(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return "", d.at(n, field, "want %s", want)
	}
	return n.Value, nil
}

func (d *decoder) policy(n *yaml.Node) error {
	es, err := d.mapping(n, "", policyFields)
	if err != nil {
		return err
	}
	p := d.p
	for _, e := range es {
		switch e.key {
		case "name":
			p.Name, err = d.scalar(e.val, e.path, "the policy's name")
		case "on_failure":
			p.OnFailure, err = d.scalar(e.val, e.path, OnFailureRollback+" or "+OnFailurePause)
		case "leftover":
			p.Leftover, err = d.scalar(e.val, e.path, LeftoverRefuse+" or "+LeftoverLeave)
		case "waves":
			err = d.waves(e.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) waves(n *yaml.Node) error {
	n = unalias(n)
	if n.Kind != yaml.SequenceNode {
		return d.at(n, "waves", "want a list of waves, each with a name")
	}
	if len(n.Content) > MaxWaves {
		return d.at(n, "waves", "%d waves; at most %d", len(n.Content), MaxWaves)
	}
	for i, wn := range n.Content {
		path := wavePath(i, "")
		d.p.lines[path] = unalias(wn).Line
		w := Wave{UnreachableDeadline: Duration(DefaultUnreachableDeadline)}
		if err := d.wave(&w, wn, path); err != nil {
			return err
		}
		d.p.Waves = append(d.p.Waves, w)
	}
	return nil
}

func (d *decoder) wave(w *Wave, n *yaml.Node, path string) error {
	es, err := d.mapping(n, path, waveFields)
	if err != nil {
		return err
	}
	for _, e := range es {
		switch e.key {
		case "name":
			w.Name, err = d.scalar(e.val, e.path, "the wave's name")
		case "selector":
			w.Selector, err = d.scalar(e.val, e.path, "a selector like tier=1,role!=mesh")
		case "percent":
			var s string
			if s, err = d.scalar(e.val, e.path, "a percentage like 5 or 12.5"); err == nil {
				if w.Percent, err = ParsePercent(s); err != nil {
					err = d.at(unalias(e.val), e.path, "%v", err)
				}
			}
		case "optional":
			v := unalias(e.val)
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
				return d.at(v, e.path, "want true or false")
			}
			w.Optional = v.Value == "true"
		case "approval":
			w.Approval = &Approval{}
			err = d.approval(w.Approval, e.val, e.path)
		case "acks":
			w.Acks = &Acks{}
			var as []entry
			if as, err = d.mapping(e.val, e.path, ackFields); err == nil {
				for _, a := range as {
					if err = d.quantity(w, "acks."+a.key, a); err != nil {
						break
					}
				}
			}
		default:
			err = d.quantity(w, e.key, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// quantity sets a duration or a limit of w from e's value.
func (d *decoder) quantity(w *Wave, field string, e entry) error {
	s, err := d.scalar(e.val, e.path, "a "+kindOf(field))
	if err != nil {
		return err
	}
	if err := setQuantity(w, field, s); err != nil {
		return d.at(unalias(e.val), e.path, "%v", err)
	}
	return nil
}

func (d *decoder) approval(a *Approval, n *yaml.Node, path string) error {
	es, err := d.mapping(n, path, approvalFields)
	if err != nil {
		return err
	}
	for _, e := range es {
		switch e.key {
		case "count":
			s, err := d.scalar(e.val, e.path, "a count ≥ 1")
			if err != nil {
				return err
			}
			if a.Count, err = strconv.Atoi(s); err != nil || a.Count < 1 || a.Count > 100 {
				return d.at(unalias(e.val), e.path, "%s is not a count of approvers from 1 to 100", strconv.Quote(s))
			}
		case "role":
			if a.Role, err = d.scalar(e.val, e.path, "a role: admin"); err != nil {
				return err
			}
		}
	}
	return nil
}

// The durations and limits of a wave: what a file sets as scalars and Set overrides.
var (
	durationFields = []string{"min_healthy_time", "healthy_deadline", "soak", "feedback_window", "feedback_remind", "unreachable_deadline", "acks.deadline", "acks.remind", "acks.escalate"}
	limitFields    = []string{"max_parallel", "max_unavailable_per_site", "failure_threshold"}
)

// kindOf says what a quantity field holds, for messages.
func kindOf(field string) string {
	if slices.Contains(limitFields, field) {
		return "count or a percentage like 25%"
	}
	return "duration like 30s, 10m or 7d"
}

// setQuantity sets a duration or a limit of w, the field named as in a file ("soak",
// "acks.remind") and the value as text. A field of acks needs w.Acks.
func setQuantity(w *Wave, field, s string) error {
	if slices.Contains(limitFields, field) {
		l, err := ParseLimit(s)
		if err != nil {
			return err
		}
		switch field {
		case "max_parallel":
			w.MaxParallel = l
		case "max_unavailable_per_site":
			w.MaxUnavailablePerSite = l
		case "failure_threshold":
			w.FailureThreshold = l
		}
		return nil
	}
	if !slices.Contains(durationFields, field) {
		return fmt.Errorf("not a duration or a limit: want one of %s", strings.Join(append(slices.Clone(limitFields), durationFields...), ", "))
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	switch field {
	case "min_healthy_time":
		w.MinHealthyTime = &v
	case "healthy_deadline":
		w.HealthyDeadline = &v
	case "soak":
		w.Soak = v
	case "feedback_window":
		w.FeedbackWindow = v
	case "feedback_remind":
		w.FeedbackRemind = v
	case "unreachable_deadline":
		w.UnreachableDeadline = v
	case "acks.deadline", "acks.remind", "acks.escalate":
		if w.Acks == nil {
			return fmt.Errorf("wave %s asks for no acks; give it acks: {deadline: ...} first", w.Name)
		}
		switch field {
		case "acks.deadline":
			w.Acks.Deadline = v
		case "acks.remind":
			w.Acks.Remind = v
		default:
			w.Acks.Escalate = v
		}
	}
	return nil
}

// Set overrides one duration or limit of the wave named, or of every wave for "*" (every wave
// that asks for acks, for acks.*; that has a feedback window, for feedback_remind), as
// rollout start --set does: Set("pilot.soak", "2d"), Set("*.min_healthy_time", "5s"). The
// value is checked as a file's is, then the whole policy again; on an error the policy is
// left as it was.
func (p *Policy) Set(path, value string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("override %s: %s", labels.Quote(path+"="+value), fmt.Sprintf(format, args...))
	}
	wave, field, ok := strings.Cut(path, ".")
	if !ok || wave == "" || field == "" {
		return fail("want WAVE.FIELD=VALUE or *.FIELD=VALUE, such as pilot.soak=2d")
	}
	next := p.clone()
	found := false
	for i := range next.Waves {
		w := &next.Waves[i]
		if wave != "*" && w.Name != wave {
			continue
		}
		// Every wave means every wave that has what the field refines.
		if wave == "*" && (strings.HasPrefix(field, "acks.") && w.Acks == nil || field == "feedback_remind" && w.FeedbackWindow == 0) {
			continue
		}
		found = true
		if err := setQuantity(w, field, value); err != nil {
			return fail("%v", err)
		}
	}
	if !found && wave == "*" {
		return fail("no wave of policy %s has what %s refines", p.Name, field)
	}
	if !found {
		names := make([]string, len(p.Waves))
		for i, w := range p.Waves {
			names[i] = w.Name
		}
		return fail("policy %s has no wave %s; its waves are %s", p.Name, labels.Quote(wave), strings.Join(names, ", "))
	}
	if err := next.validate(); err != nil {
		return fail("%v", err)
	}
	*p = *next
	return nil
}

// Override applies "WAVE.FIELD=VALUE" (see Set).
func (p *Policy) Override(s string) error {
	path, value, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("override %s: want WAVE.FIELD=VALUE or *.FIELD=VALUE, such as pilot.soak=2d", labels.Quote(s))
	}
	return p.Set(path, value)
}

// clone copies the policy deeply enough that changing the copy's waves leaves p alone.
func (p *Policy) clone() *Policy {
	c := *p
	c.Waves = slices.Clone(p.Waves)
	for i := range c.Waves {
		w := &c.Waves[i]
		if w.MinHealthyTime != nil {
			v := *w.MinHealthyTime
			w.MinHealthyTime = &v
		}
		if w.HealthyDeadline != nil {
			v := *w.HealthyDeadline
			w.HealthyDeadline = &v
		}
		if w.Approval != nil {
			v := *w.Approval
			w.Approval = &v
		}
		if w.Acks != nil {
			v := *w.Acks
			w.Acks = &v
		}
	}
	return &c
}
