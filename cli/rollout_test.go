package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/rollout"
)

// ferry rollout policy list|show, against a real server: show prints exactly the built-in
// policy's file, which parses, copied, to what -o json prints.
func TestRolloutPolicy(t *testing.T) {
	f := newFleet(t)
	out := f.mustFerry("rollout", "policy", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "SUMMARY") {
		t.Fatalf("policy list:\n%s", out)
	}
	for i, name := range []string{"minor", "major", "breaking"} {
		if f := strings.Fields(lines[i+1]); f[0] != name {
			t.Errorf("policy list row %d: %q, want %s first", i+1, lines[i+1], name)
		}
	}
	if !strings.Contains(out, "pilot (tier=1, soak 7d) → half (50%, soak 1d) → rest (the rest)") {
		t.Errorf("policy list does not summarise minor:\n%s", out)
	}

	var list []api.Policy
	if err := json.Unmarshal([]byte(f.mustFerry("rollout", "policy", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[1].Name != "major" || list[1].Waves != 3 || list[1].Summary == "" || list[1].YAML != "" {
		t.Errorf("policy list -o json: %+v", list)
	}

	for _, name := range rollout.BuiltinNames() {
		text := f.mustFerry("rollout", "policy", "show", name)
		want, _ := rollout.BuiltinYAML(name)
		if text != string(want) {
			t.Errorf("policy show %s:\n%s\nwant the built-in file:\n%s", name, text, want)
		}
		copied, err := rollout.ParsePolicy(name+".yaml", []byte(text))
		if err != nil {
			t.Fatalf("the copy of %s: %v", name, err)
		}
		var shown, parsed any
		if err := json.Unmarshal([]byte(f.mustFerry("rollout", "policy", "show", name, "-o", "json")), &shown); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(copied)
		json.Unmarshal(b, &parsed)
		if s1, s2 := mustJSON(t, shown), mustJSON(t, parsed); s1 != s2 {
			t.Errorf("policy show %s -o json:\n%s\nwant the copy as parsed:\n%s", name, s1, s2)
		}
	}

	_, errOut, code := f.ferry("rollout", "policy", "show", "careful")
	if code != 1 || !strings.Contains(errOut, `no built-in policy "careful": the built-in policies are minor, major, breaking`) {
		t.Errorf("show of an unknown policy: exit %d, %q", code, errOut)
	}
	if _, errOut, code := f.ferry("rollout", "policy", "show"); code != 2 {
		t.Errorf("show without a name: exit %d, %q", code, errOut)
	}
	if _, errOut, code := f.ferry("rollout", "policies"); code != 2 || !strings.Contains(errOut, `unknown command "policies" for "ferry rollout"`) {
		t.Errorf("an unknown rollout verb: exit %d, %q", code, errOut)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
