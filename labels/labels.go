// Package labels holds the naming rules of the fleet (DNS-label names, label keys and values)
// and Kubernetes-style equality selectors over node labels.
package labels

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$`)
)

// The rules of the patterns above, in words, for error messages.
const (
	nameRule  = "1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
	valueRule = "up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)

// Length bounds of names (DNS labels, label keys) and label values, in bytes. The patterns
// above enforce them too; they are checked first so that an error never echoes a huge input.
const (
	MaxNameLen  = 63
	MaxValueLen = 63
)

// Quote quotes s for an error message, cut to its first 64 bytes so that a huge input is not
// echoed back whole.
func Quote(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:64]) + "..."
}

// Implicit label keys: every node carries them, derived from its site; they cannot be set.
const (
	KeySite = "site"
	KeyTier = "tier"
)

// CheckName reports whether s is a valid name for a site, node or label key: a DNS label
// (RFC 1123: lower-case letters, digits and '-', 1 to 63 characters, no '-' at either end).
func CheckName(kind, s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("invalid %s %s: %d characters; at most %d", kind, Quote(s), len(s), MaxNameLen)
	}
	if !dnsLabel.MatchString(s) {
		return fmt.Errorf("invalid %s %q: use %s", kind, s, nameRule)
	}
	return nil
}

// CheckValue reports whether v is a valid label value (Kubernetes rules: up to 63 characters of
// letters, digits, '-', '_' and '.', starting and ending with a letter or digit; may be empty).
func CheckValue(key, v string) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("invalid value %s for label %q: %d characters; at most %d", Quote(v), key, len(v), MaxValueLen)
	}
	if !labelValue.MatchString(v) {
		return fmt.Errorf("invalid value %q for label %q: use %s", v, key, valueRule)
	}
	return nil
}

// MaxLabels bounds the labels one node or site carries (the implicit site and tier not
// counted). With keys and values of at most 63 characters each, a label set stays under 9 KB.
const MaxLabels = 64

// Set is the labels of a node or a site.
type Set map[string]string

// Validate checks the number of labels (at most MaxLabels) and every key and value; implicit
// keys may not be set by hand.
func (s Set) Validate() error {
	if len(s) > MaxLabels {
		return fmt.Errorf("%d labels given; a node or site carries at most %d", len(s), MaxLabels)
	}
	for _, k := range s.Keys() {
		if err := CheckName("label key", k); err != nil {
			return err
		}
		if k == KeySite || k == KeyTier {
			return fmt.Errorf("label %q is implicit (every node carries its site's name and tier) and cannot be set", k)
		}
		if err := CheckValue(k, s[k]); err != nil {
			return err
		}
	}
	return nil
}

// Keys returns the keys in sorted order.
func (s Set) Keys() []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String renders the set as k=v,k=v in key order.
func (s Set) String() string {
	var b strings.Builder
	for i, k := range s.Keys() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(s[k])
	}
	return b.String()
}

// ParseSet parses "k=v,k=v" (or the same split over several arguments) into a validated Set.
// An empty string is the empty set.
func ParseSet(parts ...string) (Set, error) {
	s := Set{}
	for _, p := range parts {
		for _, kv := range strings.Split(p, ",") {
			kv = strings.TrimSpace(kv)
			if kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("invalid label %s: want key=value", Quote(kv))
			}
			if _, dup := s[k]; dup {
				return nil, fmt.Errorf("label %s given twice", Quote(k))
			}
			s[k] = v
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Op is a selector requirement's operator.
type Op string

// Operators of the equality-based selector syntax, plus existence tests.
const (
	Equals    Op = "="
	NotEquals Op = "!="
	Exists    Op = "exists"
	NotExists Op = "!exists"
)

// Requirement is one comma-separated term of a selector.
type Requirement struct {
	Key   string
	Op    Op
	Value string
}

// Selector is a conjunction of requirements; the empty selector matches everything.
type Selector []Requirement

// ParseSelector parses Kubernetes' equality syntax: "site=ams,tier==1,role!=mesh,gpu,!spare".
// An error names the term at fault once and says what it should be.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	if strings.TrimSpace(s) == "" {
		return sel, nil
	}
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			return nil, fmt.Errorf("invalid selector %s: empty term; separate terms with one ','", Quote(s))
		}
		r, err := parseRequirement(term)
		if err != nil {
			return nil, fmt.Errorf("invalid selector term %s: %s", Quote(term), err)
		}
		sel = append(sel, r)
	}
	return sel, nil
}

// parseRequirement parses one term; its error says what is wrong without repeating the term.
func parseRequirement(term string) (Requirement, error) {
	var r Requirement
	switch op, i := operator(term); {
	case op == "":
		r = Requirement{Key: term, Op: Exists}
		if k, ok := strings.CutPrefix(term, "!"); ok {
			r = Requirement{Key: strings.TrimSpace(k), Op: NotExists}
		}
	default:
		r = Requirement{Key: strings.TrimSpace(term[:i]), Op: Equals, Value: strings.TrimSpace(term[i+len(op):])}
		if op == string(NotEquals) {
			r.Op = NotEquals
		}
		// An empty value is almost always an unset shell variable (site=$SITE), and key!= would
		// then select every node: refuse it rather than guess.
		switch {
		case strings.ContainsAny(r.Value, "=!"):
			return r, errors.New("one operator per term: want key=value, key==value or key!=value")
		case r.Value == "":
			return r, fmt.Errorf("no value after %q; give key%svalue, or test only that the label is there with key or !key", op, op)
		}
	}
	badKey := CheckName("key", r.Key) != nil
	switch {
	case badKey && (r.Op == Exists || r.Op == NotExists):
		return r, errors.New("want key=value, key!=value, key or !key, where a key is " + nameRule)
	case badKey:
		return r, errors.New("the key must be " + nameRule)
	case CheckValue(r.Key, r.Value) != nil:
		return r, errors.New("the value must be " + valueRule)
	}
	return r, nil
}

// operator finds a term's comparison: the first "!=", "==" or "=" in it, and where it starts;
// "" when the term has none (an existence test).
func operator(term string) (string, int) {
	i := strings.Index(term, "=")
	switch {
	case i < 0:
		return "", -1
	case i > 0 && term[i-1] == '!':
		return string(NotEquals), i - 1
	case strings.HasPrefix(term[i:], "=="):
		return "==", i
	}
	return "=", i
}

// Matches reports whether the labels satisfy every requirement.
func (sel Selector) Matches(l Set) bool {
	for _, r := range sel {
		v, ok := l[r.Key]
		switch r.Op {
		case Equals:
			if !ok || v != r.Value {
				return false
			}
		case NotEquals:
			if ok && v == r.Value {
				return false
			}
		case Exists:
			if !ok {
				return false
			}
		case NotExists:
			if ok {
				return false
			}
		}
	}
	return true
}

// String renders the selector in canonical form.
func (sel Selector) String() string {
	parts := make([]string, len(sel))
	for i, r := range sel {
		switch r.Op {
		case Exists:
			parts[i] = r.Key
		case NotExists:
			parts[i] = "!" + r.Key
		default:
			parts[i] = r.Key + string(r.Op) + r.Value
		}
	}
	return strings.Join(parts, ",")
}
