package labels

import (
	"testing"
)

func TestSelector(t *testing.T) {
	node := Set{"site": "ams", "tier": "1", "role": "mirror", "gpu": ""}
	tests := []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"site=ams", true},
		{"site==ams", true},
		{"site=gva", false},
		{"site=ams,tier=1", true},
		{"site=ams,tier=2", false},
		{"role!=mesh", true},
		{"role!=mirror", false},
		{"absent!=x", true},
		{"gpu", true},
		{"!gpu", false},
		{"!spare", true},
		{"spare", false},
		{" site = ams , role != mesh ", true},
	}
	for _, tt := range tests {
		sel, err := ParseSelector(tt.sel)
		if err != nil {
			t.Fatalf("ParseSelector(%q): %v", tt.sel, err)
		}
		if got := sel.Matches(node); got != tt.want {
			t.Errorf("%q.Matches = %v, want %v", tt.sel, got, tt.want)
		}
	}
}

func TestSelectorErrors(t *testing.T) {
	for _, s := range []string{"site=ams,", ",", "Site=ams", "=ams", "site=a b", "!", "a=b=c", "-x=1", "site=" + string(make([]byte, 70))} {
		if _, err := ParseSelector(s); err == nil {
			t.Errorf("ParseSelector(%q): want error", s)
		}
	}
}

func TestParseSet(t *testing.T) {
	s, err := ParseSet("role=mirror,rack=r12", "zone=b")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "rack=r12,role=mirror,zone=b" {
		t.Fatalf("String = %q", got)
	}
	for _, bad := range []string{"noequals", "site=ams", "tier=1", "Role=x", "a=1,a=2", "k=-bad-"} {
		if _, err := ParseSet(bad); err == nil {
			t.Errorf("ParseSet(%q): want error", bad)
		}
	}
}

func TestCheckName(t *testing.T) {
	good := []string{"a", "ams", "node-01", "0", "a23456789012345678901234567890123456789012345678901234567890123"}
	bad := []string{"", "-a", "a-", "A", "a_b", "a.b", "a23456789012345678901234567890123456789012345678901234567890123x", "ä"}
	for _, s := range good {
		if err := CheckName("name", s); err != nil {
			t.Errorf("CheckName(%q): %v", s, err)
		}
	}
	for _, s := range bad {
		if err := CheckName("name", s); err == nil {
			t.Errorf("CheckName(%q): want error", s)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"", "site=ams", "a!=b,c==d", "gpu,!spare", "x=,=y", "!!a", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		// The canonical form must parse back to the same selector.
		again, err := ParseSelector(sel.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", sel.String(), s, err)
		}
		if again.String() != sel.String() {
			t.Fatalf("round trip changed %q to %q", sel.String(), again.String())
		}
		for _, r := range sel {
			if CheckName("key", r.Key) != nil {
				t.Fatalf("accepted bad key %q", r.Key)
			}
		}
	})
}

func FuzzParseSet(f *testing.F) {
	for _, s := range []string{"a=b", "a=b,c=d", "a=", "=", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseSet(s)
		if err != nil {
			return
		}
		if err := set.Validate(); err != nil {
			t.Fatalf("ParseSet(%q) returned invalid set: %v", s, err)
		}
		again, err := ParseSet(set.String())
		if err != nil || again.String() != set.String() {
			t.Fatalf("round trip of %q failed: %v", set.String(), err)
		}
	})
}
