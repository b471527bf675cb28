package notify

import (
	"strings"

	"github.com/ferryhq/ferry/fault"
)

// Limits of a webhook's event globs.
const (
	MaxGlobs   = 16
	MaxGlobLen = 64
)

// ParseEvents reads a comma-separated list of globs over event types: "rollout.*", "app.state",
// "*". A glob holds lower-case letters, digits, '_', '.' and '*', which matches any run of
// characters, dots included. Repeats are dropped; the order is kept.
func ParseEvents(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			return nil, fault.Invalid("invalid --events %q: want globs over event types separated by commas, e.g. 'rollout.*,app.state' or '*'", truncate(s, MaxGlobLen))
		}
		if len(g) > MaxGlobLen {
			return nil, fault.Invalid("event glob %q… is longer than %d characters", g[:MaxGlobLen], MaxGlobLen)
		}
		for _, r := range g {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '*') {
				return nil, fault.Invalid("event glob %q: %q is not allowed; use lower-case letters, digits, '_', '.' and '*'", g, r)
			}
		}
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	if len(out) > MaxGlobs {
		return nil, fault.Invalid("%d event globs; at most %d", len(out), MaxGlobs)
	}
	return out, nil
}

// Matches reports whether typ matches one of globs.
func Matches(globs []string, typ string) bool {
	for _, g := range globs {
		if match(g, typ) {
			return true
		}
	}
	return false
}

// match reports whether s matches the glob g, in which '*' matches any run of bytes. It keeps
// only the last star's position to return to, so it takes O(len(g)·len(s)) at worst, whatever
// the input.
func match(g, s string) bool {
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(g) && g[gi] == '*':
			star, mark = gi, si
			gi++
		case gi < len(g) && g[gi] == s[si]:
			gi++
			si++
		case star >= 0:
			mark++
			gi, si = star+1, mark
		default:
			return false
		}
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// checkLen refuses a string longer than n bytes, naming what it is.
func checkLen(what, s string, n int) error {
	if len(s) > n {
		return fault.Invalid("%s is %d bytes long; at most %d", what, len(s), n)
	}
	return nil
}
