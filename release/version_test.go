package release

import (
	"sort"
	"testing"
)

func TestVersionOrder(t *testing.T) {
	// Ascending, per semver precedence, with epochs above all.
	order := []string{"0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.4.0", "1.10.0", "2.0.0", "1:0.1.0", "1:1.0.0", "2:0.0.1"}
	var vs []Version
	for _, s := range order {
		v, err := ParseVersion(s)
		if err != nil {
			t.Fatalf("ParseVersion(%q): %v", s, err)
		}
		if v.String() != s {
			t.Fatalf("String = %q, want %q", v.String(), s)
		}
		vs = append(vs, v)
	}
	shuffled := append([]Version(nil), vs...)
	sort.Slice(shuffled, func(i, j int) bool { return shuffled[i].String() > shuffled[j].String() })
	sort.SliceStable(shuffled, func(i, j int) bool { return shuffled[i].Compare(shuffled[j]) < 0 })
	for i := range vs {
		if shuffled[i] != vs[i] {
			t.Fatalf("order %d: %s, want %s", i, shuffled[i], vs[i])
		}
	}
	a, _ := ParseVersion("1.0.0+build.1")
	b, _ := ParseVersion("1.0.0+build.2")
	if a.Compare(b) != 0 {
		t.Fatal("build metadata must not affect order")
	}
	if z, _ := ParseVersion("0:1.0.0"); z.String() != "1.0.0" {
		t.Fatalf("epoch 0 renders as %q", z.String())
	}
}

func TestVersionErrors(t *testing.T) {
	for _, s := range []string{"", "1", "1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3-01", "x:1.2.3", "-1:1.2.3", "01:1.2.3", "1:", ":1.2.3", "1.2.3 ", "1:2:1.2.3", "99999999999:1.0.0"} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q): want error", s)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "2:1.0.0-rc.1+b", "0.0.0", "1:", "a.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		w, err := ParseVersion(v.String())
		if err != nil || w.Compare(v) != 0 {
			t.Fatalf("%q → %q does not round-trip: %v", s, v.String(), err)
		}
		if v.Compare(v) != 0 {
			t.Fatalf("%q does not equal itself", s)
		}
	})
}
