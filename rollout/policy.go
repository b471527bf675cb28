package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
)

// Bounds of what a policy may hold; past them it is refused unread or unresolved.
const (
	MaxPolicySize = 64 << 10 // bytes of YAML
	MaxWaves      = 32
	// MaxDuration bounds every duration a policy sets: a year is past any soak or feedback
	// window a person waits for, and the bound keeps day arithmetic far from overflow.
	MaxDuration = 366 * 24 * time.Hour
)

// DefaultUnreachableDeadline is how long a wave waits, when its policy does not say, for target
// nodes that are down before it completes without them: long enough to ride out a reboot or a
// site's short network outage, short enough that one dead machine does not hold a fleet's
// rollout for a day. A node left behind is still moved when it comes back.
const DefaultUnreachableDeadline = time.Hour

// What a policy does with target nodes that no wave takes (Policy.Leftover).
const (
	LeftoverRefuse = "refuse" // the plan is refused: the operator meant to move the whole target
	LeftoverLeave  = "leave"  // they stay on what they run; the plan lists them
)

// Policy says how a rollout moves its target: in which waves, with which limits and gates. It
// is written in YAML (ParsePolicy) and resolved against the fleet when a rollout starts
// (Resolve). A field a wave leaves out has its default; MinHealthyTime and HealthyDeadline left
// out are the release manifest's.
type Policy struct {
	Name      string `json:"name"`
	OnFailure string `json:"on_failure"`
	Leftover  string `json:"leftover"`
	Waves     []Wave `json:"waves"`

	// source names where the policy came from in messages: a file name, "policy minor".
	source string
	// lines is the line of each field path ("waves[1].max_parallel") in the source.
	lines map[string]int
}

// Wave is one stage of a policy. It takes, of the target nodes no earlier wave took, those its
// Selector matches (all when empty), at most Percent of the target nodes the selector matches
// (all of them when Percent is 0).
type Wave struct {
	Name     string  `json:"name"`
	Selector string  `json:"selector,omitempty"`
	Percent  Percent `json:"percent,omitempty"`
	// Optional lets the wave's selector match none of the target: the wave is then skipped
	// (a small fleet has no tier-1 site for a pilot) instead of the plan being refused.
	Optional              bool      `json:"optional,omitempty"`
	MaxParallel           Limit     `json:"max_parallel"`
	MaxUnavailablePerSite Limit     `json:"max_unavailable_per_site,omitzero"`
	MinHealthyTime        *Duration `json:"min_healthy_time,omitempty"`
	HealthyDeadline       *Duration `json:"healthy_deadline,omitempty"`
	FailureThreshold      Limit     `json:"failure_threshold"`
	Soak                  Duration  `json:"soak,omitempty"`
	Approval              *Approval `json:"approval,omitempty"`
	Acks                  *Acks     `json:"acks,omitempty"`
	FeedbackWindow        Duration  `json:"feedback_window,omitempty"`
	FeedbackRemind        Duration  `json:"feedback_remind,omitempty"`
	UnreachableDeadline   Duration  `json:"unreachable_deadline"`
}

// Approval is who must approve before a wave starts: Count distinct approvers with Role.
type Approval struct {
	Count int    `json:"count"`
	Role  string `json:"role"`
}

// Acks asks each site of a wave to acknowledge within Deadline; reminders go every Remind and
// the site's contacts are escalated to after Escalate (each 0 when not wanted).
type Acks struct {
	Deadline Duration `json:"deadline"`
	Remind   Duration `json:"remind,omitempty"`
	Escalate Duration `json:"escalate,omitempty"`
}

// PolicyError is a policy refused, naming the field and its line: policy.yaml:7:
// waves[1].max_parallel: "0" is not a count ≥ 1 or a percentage.
type PolicyError struct {
	Source string
	Line   int // 0 when unknown
	Field  string
	Msg    string
}

func (e *PolicyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// fail makes a PolicyError about a field, at its line in the source.
func (p *Policy) fail(field, format string, args ...any) error {
	return &PolicyError{Source: p.source, Line: p.line(field), Field: field, Msg: fmt.Sprintf(format, args...)}
}

// line is the line of field, else of the nearest enclosing field the source has.
func (p *Policy) line(field string) int {
	for f := field; f != ""; {
		if l, ok := p.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// wavePath is the field path of wave i, or of one of its fields: waves[1].soak.
func wavePath(i int, field string) string {
	if field == "" {
		return fmt.Sprintf("waves[%d]", i)
	}
	return fmt.Sprintf("waves[%d].%s", i, field)
}

// validate checks what holds across fields, and fills in the defaults ParsePolicy and Set
// leave to it. It runs after every change, so an override is checked as the file was.
func (p *Policy) validate() error {
	if p.Name == "" {
		return p.fail("name", "required: name the policy")
	}
	if err := labels.CheckName("policy name", p.Name); err != nil {
		return p.fail("name", "%v", err)
	}
	if err := p.choice("on_failure", &p.OnFailure, OnFailureRollback, OnFailurePause); err != nil {
		return err
	}
	if err := p.choice("leftover", &p.Leftover, LeftoverRefuse, LeftoverLeave); err != nil {
		return err
	}
	if len(p.Waves) == 0 {
		return p.fail("waves", "no waves: a policy needs at least one")
	}
	if len(p.Waves) > MaxWaves {
		return p.fail("waves", "%d waves; at most %d", len(p.Waves), MaxWaves)
	}
	seen := map[string]int{}
	for i := range p.Waves {
		w := &p.Waves[i]
		at := func(field, format string, args ...any) error { return p.fail(wavePath(i, field), format, args...) }
		if w.Name == "" {
			return at("name", "required: name the wave (pilot, early, rest)")
		}
		if err := labels.CheckName("wave name", w.Name); err != nil {
			return at("name", "%v", err)
		}
		if j, dup := seen[w.Name]; dup {
			return at("name", "%q names waves[%d] already", w.Name, j)
		}
		seen[w.Name] = i
		if _, err := labels.ParseSelector(w.Selector); err != nil {
			return at("selector", "%v", err)
		}
		if w.Optional && w.Selector == "" {
			return at("optional", "only a wave with a selector can be optional: one without takes the rest, which is never nothing")
		}
		if w.MaxParallel.zero() {
			w.MaxParallel = Limit{Count: 1}
		}
		if w.FailureThreshold.zero() {
			w.FailureThreshold = Limit{Count: 1}
		}
		// The same bounds as a release manifest's update block, which these override.
		if v := w.MinHealthyTime; v != nil && time.Duration(*v) > release.MaxMinHealthyTime {
			return at("min_healthy_time", "%v is longer than %v, the most a release may ask for", *v, Duration(release.MaxMinHealthyTime))
		}
		if v := w.HealthyDeadline; v != nil && (time.Duration(*v) < time.Second || time.Duration(*v) > release.MaxHealthyDeadline) {
			return at("healthy_deadline", "%v is out of bounds: want 1s to %v, as in a release's update block", *v, Duration(release.MaxHealthyDeadline))
		}
		if w.MinHealthyTime != nil && w.HealthyDeadline != nil && *w.MinHealthyTime > *w.HealthyDeadline {
			return at("min_healthy_time", "%v is longer than healthy_deadline %v: a node could never stay up long enough", *w.MinHealthyTime, *w.HealthyDeadline)
		}
		if a := w.Approval; a != nil {
			if a.Count == 0 {
				a.Count = 1
			}
			if a.Role == "" {
				a.Role = api.RoleAdmin
			}
			if a.Role != api.RoleAdmin {
				return at("approval.role", "%s: only %s tokens can approve", labels.Quote(a.Role), api.RoleAdmin)
			}
		}
		if a := w.Acks; a != nil {
			if a.Deadline == 0 {
				return at("acks.deadline", "required: how long each site has to acknowledge (3d)")
			}
			if a.Remind > a.Deadline {
				return at("acks.remind", "%v is past the deadline %v: no reminder would be sent", a.Remind, a.Deadline)
			}
			if a.Escalate > a.Deadline {
				return at("acks.escalate", "%v is past the deadline %v: no escalation would happen", a.Escalate, a.Deadline)
			}
		}
		if w.FeedbackRemind > 0 && w.FeedbackWindow == 0 {
			return at("feedback_remind", "set, but feedback_window is not: there is no feedback to remind of")
		}
		if w.FeedbackRemind > w.FeedbackWindow {
			return at("feedback_remind", "%v is past the feedback window %v: no reminder would be sent", w.FeedbackRemind, w.FeedbackWindow)
		}
	}
	return nil
}

// choice checks that a field holds one of two words, and sets the first, its default, when
// it is empty.
func (p *Policy) choice(field string, v *string, def, other string) error {
	switch *v {
	case "":
		*v = def
	case def, other:
	default:
		return p.fail(field, "%s: want %s or %s", labels.Quote(*v), def, other)
	}
	return nil
}

// Summary says in one line what the policy does: its waves, what each takes and waits for.
func (p *Policy) Summary() string {
	parts := make([]string, len(p.Waves))
	for i, w := range p.Waves {
		var what []string
		switch {
		case w.Selector != "" && w.Percent != 0:
			what = append(what, w.Percent.String()+" of "+w.Selector)
		case w.Selector != "":
			what = append(what, w.Selector)
		case w.Percent != 0:
			what = append(what, w.Percent.String())
		default:
			what = append(what, "the rest")
		}
		if w.Approval != nil {
			what = append(what, "approval")
		}
		if w.Acks != nil {
			what = append(what, "site acks")
		}
		if w.Soak > 0 {
			what = append(what, "soak "+w.Soak.String())
		}
		if w.FeedbackWindow > 0 {
			what = append(what, "feedback "+w.FeedbackWindow.String())
		}
		parts[i] = w.Name + " (" + strings.Join(what, ", ") + ")"
	}
	s := strings.Join(parts, " → ")
	if p.Leftover == LeftoverLeave {
		s += "; other nodes stay"
	}
	return s
}
