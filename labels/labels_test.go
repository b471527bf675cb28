package labels

import (
	"fmt"
	"strconv"
	"strings"
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
	for _, s := range []string{"site=ams,", ",", "Site=ams", "=ams", "site=a b", "!", "a=b=c", "-x=1", "site=", "site==", "role!=", "site = ", "site===ams", "site!==ams", "site=!=ams", "site=!ams", "site=" + string(make([]byte, 70))} {
		if _, err := ParseSelector(s); err == nil {
			t.Errorf("ParseSelector(%q): want error", s)
		}
	}
}

// A selector error is one line that names the offending text once and says what it should be.
func TestSelectorErrorMessages(t *testing.T) {
	const (
		term    = "want key=value, key!=value, key or !key, where a key is 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
		key     = "the key must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
		value   = "the value must be up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
		twoOps  = "one operator per term: want key=value, key==value or key!=value"
		noValue = "; give key%svalue, or test only that the label is there with key or !key"
	)
	for _, tt := range []struct{ sel, bad, want string }{
		{"role in (x", "role in (x", `invalid selector term "role in (x": ` + term},
		{"site=ams, role in (x,y)", "role in (x", `invalid selector term "role in (x": ` + term},
		{"!", "!", `invalid selector term "!": ` + term},
		{"Site=ams", "Site=ams", `invalid selector term "Site=ams": ` + key},
		{"site=ams,=mirror", "=mirror", `invalid selector term "=mirror": ` + key},
		{"role!=-x", "role!=-x", `invalid selector term "role!=-x": ` + value},
		{"site=ams,a=b=c", "a=b=c", `invalid selector term "a=b=c": ` + twoOps},
		{"site===ams", "site===ams", `invalid selector term "site===ams": ` + twoOps},
		{"site!==ams", "site!==ams", `invalid selector term "site!==ams": ` + twoOps},
		{"site=!=ams", "site=!=ams", `invalid selector term "site=!=ams": ` + twoOps},
		{"site=", "site=", `invalid selector term "site=": no value after "="` + fmt.Sprintf(noValue, "=")},
		{"site==", "site==", `invalid selector term "site==": no value after "=="` + fmt.Sprintf(noValue, "==")},
		{"role=mirror, site != ", "site !=", `invalid selector term "site !=": no value after "!="` + fmt.Sprintf(noValue, "!=")},
		{"site=ams,", "site=ams,", `invalid selector "site=ams,": empty term; separate terms with one ','`},
		{"site=ams,,role=mirror", "site=ams,,role=mirror", `invalid selector "site=ams,,role=mirror": empty term; separate terms with one ','`},
	} {
		_, err := ParseSelector(tt.sel)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseSelector(%q):\n got %v\nwant %s", tt.sel, err, tt.want)
			continue
		}
		if n := strings.Count(err.Error(), strconv.Quote(tt.bad)); n != 1 {
			t.Errorf("ParseSelector(%q): %q says %q %d times", tt.sel, err, tt.bad, n)
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
	for _, s := range []string{"", "site=ams", "a!=b,c==d", "gpu,!spare", "x=,=y", "!!a", "a=b=c", "role in (x", "a=\n", "site=", "site==", "role!=", "a===b", "a!==b", "a=!=b", "a= ,b", "!a=b", "=", "==", "!=", "k=" + strings.Repeat("v", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			// One line about the selector, never echoing the whole of a long input.
			if msg := err.Error(); !strings.HasPrefix(msg, "invalid selector ") || strings.ContainsAny(msg, "\r\n") || len(msg) > 512 {
				t.Fatalf("ParseSelector(%q): error %q", s, msg)
			}
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

func TestMaxLabels(t *testing.T) {
	full := Set{}
	for i := 0; i < MaxLabels; i++ {
		full[fmt.Sprintf("k%d", i)] = "v"
	}
	if err := full.Validate(); err != nil {
		t.Fatalf("%d labels: %v", MaxLabels, err)
	}
	over := Set{"one-more": "v"}
	for k, v := range full {
		over[k] = v
	}
	err := over.Validate()
	if err == nil || !strings.Contains(err.Error(), "at most 64") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("%d labels: got %v, want a one-line error naming the limit", len(over), err)
	}
	// What the outside probe sent: 10,000 labels in one call.
	parts := make([]string, 10000)
	for i := range parts {
		parts[i] = fmt.Sprintf("k%d=v", i)
	}
	if _, err := ParseSet(strings.Join(parts, ",")); err == nil {
		t.Fatal("ParseSet accepted 10,000 labels")
	}
}

func TestLengthBounds(t *testing.T) {
	max := strings.Repeat("a", MaxValueLen)
	if err := CheckValue("k", max); err != nil {
		t.Errorf("%d-character value: %v", MaxValueLen, err)
	}
	if err := (Set{strings.Repeat("k", MaxNameLen): max}).Validate(); err != nil {
		t.Errorf("longest key and value: %v", err)
	}
	huge := strings.Repeat("a", 1<<20)
	for name, err := range map[string]error{
		"value of 64":  CheckValue("k", max+"a"),
		"name of 64":   CheckName("name", strings.Repeat("a", MaxNameLen+1)),
		"huge value":   CheckValue("k", huge),
		"huge name":    CheckName("name", huge),
		"huge key":     Set{huge: "v"}.Validate(),
		"huge in set":  Set{"k": huge}.Validate(),
		"huge in sel":  func() error { _, err := ParseSelector("k=" + huge); return err }(),
		"huge sel key": func() error { _, err := ParseSelector(huge); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if len(err.Error()) > 300 {
			t.Errorf("%s: error of %d bytes echoes the input", name, len(err.Error()))
		}
	}
}

func TestParseSetErrorsAreShort(t *testing.T) {
	huge := strings.Repeat("a", 1<<20)
	for _, in := range []string{huge, huge + "=1," + huge + "=2", "k=" + huge} {
		_, err := ParseSet(in)
		if err == nil || len(err.Error()) > 300 {
			t.Errorf("ParseSet of %d bytes: error %.80q... (%d bytes)", len(in), err, len(fmt.Sprint(err)))
		}
	}
}
