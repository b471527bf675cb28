package cli

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/labels"
)

// FuzzParseLabelArgs: the arguments of node label and site label either make a change the
// server's rules accept in form (valid keys and values, no implicit key set, removals sorted,
// something to do) or a usage error in one bounded line.
func FuzzParseLabelArgs(f *testing.F) {
	for _, s := range []string{"pilot=breaking", "pilot=breaking zone- role=mirror,gpu=", "site=x", "tier-", "a-", "-",
		"=", "a=b=c", "a=b a=c", "Bad=x", "k=\x1b[2J", ",,,", "", "a=b,", strings.Repeat("k", 100) + "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		c, err := parseLabelArgs("site label", args)
		if err != nil {
			msg := err.Error()
			if !errors.As(err, new(UsageError)) || msg == "" || strings.Contains(msg, "\n") || len(msg) > 1024 {
				t.Fatalf("parseLabelArgs(%q): error %T %q is not one bounded usage line", args, err, msg)
			}
			return
		}
		if len(c.Set) == 0 && len(c.Remove) == 0 {
			t.Fatalf("parseLabelArgs(%q) accepted a change that changes nothing", args)
		}
		if err := labels.Set(c.Set).Validate(); err != nil {
			t.Fatalf("parseLabelArgs(%q) accepted an invalid set %v: %v", args, c.Set, err)
		}
		for _, k := range c.Remove {
			if err := labels.CheckName("label key", k); err != nil {
				t.Fatalf("parseLabelArgs(%q) accepted removing %q: %v", args, k, err)
			}
		}
		if !slices.IsSorted(c.Remove) || c.Selector != "" {
			t.Fatalf("parseLabelArgs(%q) = %+v", args, c)
		}
	})
}
