package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// careful is the policy of the example, with every field a wave can hold somewhere.
const careful = `name: careful
on_failure: rollback
waves:
  - {name: pilot, selector: "site=ams", max_parallel: 1, failure_threshold: 1, min_healthy_time: 10s}
  - name: early
    percent: 12.5
    max_parallel: 25%
    max_unavailable_per_site: 1
    healthy_deadline: 10m
    failure_threshold: 10%
    soak: 1d12h
    approval: {count: 2, role: admin}
    acks: {deadline: 3d, remind: 1d, escalate: 2d}
    feedback_window: 14d
    feedback_remind: 3d
    unreachable_deadline: 30m
  - {name: rest, percent: 100, max_parallel: 25%, max_unavailable_per_site: 1, soak: 1h}
`

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy("careful.yaml", []byte(careful))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "careful" || p.OnFailure != OnFailureRollback || p.Leftover != LeftoverRefuse || len(p.Waves) != 3 {
		t.Fatalf("policy %+v", p)
	}
	pilot, early := p.Waves[0], p.Waves[1]
	if pilot.MaxParallel != (Limit{Count: 1}) || *pilot.MinHealthyTime != Duration(10*time.Second) || pilot.HealthyDeadline != nil {
		t.Errorf("pilot %+v", pilot)
	}
	if pilot.UnreachableDeadline != Duration(DefaultUnreachableDeadline) {
		t.Errorf("pilot unreachable_deadline %v, want the default %v", pilot.UnreachableDeadline, DefaultUnreachableDeadline)
	}
	want := Wave{
		Name: "early", Percent: 1250, MaxParallel: Limit{Percent: 2500}, MaxUnavailablePerSite: Limit{Count: 1},
		FailureThreshold: Limit{Percent: 1000}, Soak: Duration(36 * time.Hour),
		Approval: &Approval{Count: 2, Role: "admin"}, Acks: &Acks{Deadline: Duration(3 * day), Remind: Duration(day), Escalate: Duration(2 * day)},
		FeedbackWindow: Duration(14 * day), FeedbackRemind: Duration(3 * day), UnreachableDeadline: Duration(30 * time.Minute),
	}
	dl := Duration(10 * time.Minute)
	want.HealthyDeadline = &dl
	got, _ := json.Marshal(early)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("early wave\n got %s\nwant %s", got, exp)
	}
	// The JSON of a policy reads back as the policy.
	b, _ := json.Marshal(p)
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("JSON of the policy does not read back: %v\n%s", err, b)
	}
	if b2, _ := json.Marshal(back); string(b2) != string(b) {
		t.Errorf("JSON round trip\n got %s\nwant %s", b2, b)
	}
}

// Every refusal is one line naming the source, the line and the field.
func TestParsePolicyRefuses(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"bad max_parallel", "name: p\nwaves:\n  - name: a\n  - name: b\n    selector: x=y\n\n    max_parallel: 0\n",
			`policy.yaml:7: waves[1].max_parallel: "0" is not a count ≥ 1 or a percentage`},
		{"percent over 100", "name: p\nwaves:\n  - {name: a, percent: 101}\n", `policy.yaml:3: waves[0].percent: "101" is not a percentage`},
		{"percent zero", "name: p\nwaves:\n  - {name: a, percent: 0}\n", `policy.yaml:3: waves[0].percent: "0" is not a percentage`},
		{"percent three decimals", "name: p\nwaves:\n  - {name: a, percent: 0.125}\n", `policy.yaml:3: waves[0].percent: "0.125" is not a percentage`},
		{"limit percent over 100", "name: p\nwaves:\n  - {name: a, failure_threshold: 150%}\n", `policy.yaml:3: waves[0].failure_threshold: "150%" is not a count ≥ 1 or a percentage`},
		{"negative count", "name: p\nwaves:\n  - {name: a, max_unavailable_per_site: -1}\n", `policy.yaml:3: waves[0].max_unavailable_per_site: "-1" is not a count`},
		{"negative duration", "name: p\nwaves:\n  - name: a\n    soak: -1h\n", `policy.yaml:4: waves[0].soak: "-1h" is negative`},
		{"bad duration", "name: p\nwaves:\n  - name: a\n    soak: a week\n", `policy.yaml:4: waves[0].soak: "a week" is not a duration`},
		{"too long", "name: p\nwaves:\n  - name: a\n    soak: 400d\n", `policy.yaml:4: waves[0].soak: "400d" is not a duration`},
		{"list for a duration", "name: p\nwaves:\n  - name: a\n    soak: [1h]\n", `policy.yaml:4: waves[0].soak: want a duration`},
		{"unknown field", "name: p\nwaves:\n  - name: a\n    max_paralel: 2\n", `policy.yaml:4: waves[0].max_paralel: unknown field; want one of name, selector`},
		{"unknown top field", "name: p\nwave: []\n", `policy.yaml:2: wave: unknown field`},
		{"unknown acks field", "name: p\nwaves:\n  - name: a\n    acks: {deadline: 1d, nag: 1h}\n", `policy.yaml:4: waves[0].acks.nag: unknown field; want one of deadline, remind, escalate`},
		{"field twice", "name: p\nname: q\nwaves: [{name: a}]\n", `policy.yaml:2: name: given twice`},
		{"no name", "waves:\n  - name: a\n", `policy.yaml: name: required`},
		{"no waves", "name: p\n", `policy.yaml: waves: no waves`},
		{"empty waves", "name: p\nwaves: []\n", `policy.yaml:2: waves: no waves`},
		{"waves not a list", "name: p\nwaves: {name: a}\n", `policy.yaml:2: waves: want a list of waves`},
		{"wave not a mapping", "name: p\nwaves:\n  - pilot\n", `policy.yaml:3: waves[0]: want a mapping for the waves[0]`},
		{"wave without a name", "name: p\nwaves:\n  - name: a\n  - selector: x=y\n", `policy.yaml:4: waves[1].name: required`},
		{"duplicate wave", "name: p\nwaves:\n  - name: a\n  - name: a\n", `policy.yaml:4: waves[1].name: "a" names waves[0] already`},
		{"bad wave name", "name: p\nwaves:\n  - name: Pilot Wave\n", `policy.yaml:3: waves[0].name: invalid wave name`},
		{"bad selector", "name: p\nwaves:\n  - name: a\n    selector: \"tier=1,,x\"\n", `policy.yaml:4: waves[0].selector: invalid selector`},
		{"bad on_failure", "name: p\non_failure: retry\nwaves: [{name: a}]\n", `policy.yaml:2: on_failure: "retry": want rollback or pause`},
		{"bad leftover", "name: p\nleftover: keep\nwaves: [{name: a}]\n", `policy.yaml:2: leftover: "keep": want refuse or leave`},
		{"optional not bool", "name: p\nwaves:\n  - {name: a, selector: x=y, optional: yes}\n", `policy.yaml:3: waves[0].optional: want true or false`},
		{"optional without selector", "name: p\nwaves:\n  - {name: a, optional: true}\n", `policy.yaml:3: waves[0].optional: only a wave with a selector`},
		{"approval role", "name: p\nwaves:\n  - name: a\n    approval: {role: viewer}\n", `policy.yaml:4: waves[0].approval.role: "viewer": only admin tokens can approve`},
		{"approval count", "name: p\nwaves:\n  - name: a\n    approval: {count: 0}\n", `policy.yaml:4: waves[0].approval.count: "0" is not a count of approvers`},
		{"acks without deadline", "name: p\nwaves:\n  - name: a\n    acks: {remind: 1d}\n", `policy.yaml:4: waves[0].acks.deadline: required`},
		{"acks remind past deadline", "name: p\nwaves:\n  - name: a\n    acks:\n      deadline: 1d\n      remind: 2d\n", `policy.yaml:6: waves[0].acks.remind: 2d is past the deadline 1d`},
		{"feedback remind alone", "name: p\nwaves:\n  - name: a\n    feedback_remind: 1d\n", `policy.yaml:4: waves[0].feedback_remind: set, but feedback_window is not`},
		{"min healthy too long", "name: p\nwaves:\n  - name: a\n    min_healthy_time: 2h\n", `policy.yaml:4: waves[0].min_healthy_time: 2h is longer than 1h, the most a release may ask for`},
		{"healthy deadline zero", "name: p\nwaves:\n  - name: a\n    healthy_deadline: 0s\n", `policy.yaml:4: waves[0].healthy_deadline: 0s is out of bounds: want 1s to 1d`},
		{"min healthy past deadline", "name: p\nwaves:\n  - name: a\n    min_healthy_time: 10m\n    healthy_deadline: 5m\n", `policy.yaml:4: waves[0].min_healthy_time: 10m is longer than healthy_deadline 5m`},
		{"not yaml", "name: p\nwaves: [\n", `policy.yaml:2: not YAML:`},
		{"two documents", "name: p\nwaves: [{name: a}]\n---\nname: q\n", `policy.yaml:3: holds more than one YAML document`},
		{"empty", "", `policy.yaml: empty`},
		{"a list", "- name: a\n", `policy.yaml:1: want a mapping for the policy`},
		{"too big", "name: p\n#" + strings.Repeat("x", MaxPolicySize) + "\n", `policy.yaml: 65546 bytes; a policy is at most 65536`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicy("policy.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.yaml)
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("error\n got %s\nwant %s…", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of more than one line: %q", err)
			}
			if !errors.As(err, new(*PolicyError)) {
				t.Errorf("error %T, want a *PolicyError", err)
			}
		})
	}
}

// Anchors, aliases and merge keys share settings between waves, as YAML users expect; a
// wave's own field wins over a merged one.
func TestParsePolicyMergeKeys(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(`name: p
waves:
  - &wide {name: a, selector: x=y, max_parallel: 25%, soak: 1h}
  - {<<: *wide, name: b, soak: 2h, selector: ""}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := p.Waves[1]
	if b.Name != "b" || b.Selector != "" || b.MaxParallel != (Limit{Percent: 2500}) || b.Soak != Duration(2*time.Hour) {
		t.Errorf("merged wave %+v", b)
	}
	// A chain of merges that doubles at each step costs bounded work.
	var chain strings.Builder
	chain.WriteString("name: p\nwaves:\n  - &m0 {name: w}\n")
	for i := 1; i < MaxWaves; i++ {
		fmt.Fprintf(&chain, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	if _, err := ParsePolicy("p.yaml", []byte(chain.String())); err == nil || !strings.Contains(err.Error(), "too many fields") {
		t.Errorf("a merge chain: %v", err)
	}
}

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"7d", 7 * day, "7d"}, {"14d", 14 * day, "14d"}, {"1d12h", 36 * time.Hour, "1d12h"}, {"90s", 90 * time.Second, "1m30s"},
		{"1h", time.Hour, "1h"}, {"5m", 5 * time.Minute, "5m"}, {"0s", 0, "0s"}, {"0d", 0, "0s"}, {"1h30m", 90 * time.Minute, "1h30m"},
		{"366d", 366 * day, "366d"}, {"250ms", 250 * time.Millisecond, "250ms"},
	} {
		d, err := ParseDuration(c.in)
		if err != nil || time.Duration(d) != c.want || d.String() != c.out {
			t.Errorf("ParseDuration(%q) = %v (%s), %v; want %v (%s)", c.in, time.Duration(d), d, err, c.want, c.out)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("%s does not read back: %v, %v", d, back, err)
		}
	}
	for _, bad := range []string{"", "d", "7", "-1d", "1d-1h", "1.5d", "12h3d", "367d", "8785h", "99999999999d", "1d+1h", "7 d"} {
		if d, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, d)
		}
	}
}

func TestLimitOf(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want int
	}{
		{"1", 10, 1}, {"3", 2, 2}, {"3", 0, 1}, {"25%", 10, 3}, {"25%", 8, 2}, {"10%", 1, 1}, {"0.01%", 1000, 1},
		{"100%", 7, 7}, {"33.33%", 300, 100}, {"33.34%", 300, 101},
	} {
		l, err := ParseLimit(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Of(c.n); got != c.want {
			t.Errorf("%s of %d = %d, want %d", c.in, c.n, got, c.want)
		}
	}
}

func TestSet(t *testing.T) {
	p, err := ParsePolicy("careful.yaml", []byte(careful))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []string{"pilot.soak=2d", "*.min_healthy_time=5s", "*.acks.escalate=1d12h", "*.feedback_remind=2d", "rest.max_parallel=50%", "early.acks.remind=12h", "early.failure_threshold=3"} {
		if err := p.Override(kv); err != nil {
			t.Fatalf("%s: %v", kv, err)
		}
	}
	if p.Waves[1].Acks.Escalate != Duration(36*time.Hour) || p.Waves[1].FeedbackRemind != Duration(2*day) || p.Waves[0].FeedbackRemind != 0 {
		t.Errorf("overrides of every wave with acks or feedback not applied: %+v", p.Waves)
	}
	if p.Waves[0].Soak != Duration(2*day) || p.Waves[2].MaxParallel != (Limit{Percent: 5000}) || p.Waves[1].Acks.Remind != Duration(12*time.Hour) || p.Waves[1].FailureThreshold != (Limit{Count: 3}) {
		t.Errorf("overrides not applied: %+v", p.Waves)
	}
	for _, w := range p.Waves {
		if w.MinHealthyTime == nil || *w.MinHealthyTime != Duration(5*time.Second) {
			t.Errorf("wave %s: min_healthy_time %v, want 5s", w.Name, w.MinHealthyTime)
		}
	}
	before, _ := json.Marshal(p)
	for _, c := range []struct{ kv, want string }{
		{"pilot.soak=-1h", `override "pilot.soak=-1h": "-1h" is negative`},
		{"pilot.max_parallel=0", `override "pilot.max_parallel=0": "0" is not a count ≥ 1 or a percentage`},
		{"canary.soak=1h", `override "canary.soak=1h": policy careful has no wave "canary"; its waves are pilot, early, rest`},
		{"pilot.selector=x=y", `override "pilot.selector=x=y": not a duration or a limit`},
		{"pilot.acks.deadline=1d", `override "pilot.acks.deadline=1d": wave pilot asks for no acks`},
		{"soak=1h", `override "soak=1h": want WAVE.FIELD=VALUE`},
		{"*.healthy_deadline=0s", `override "*.healthy_deadline=0s": careful.yaml:4: waves[0].healthy_deadline: 0s is out of bounds`},
		{"pilot.soak", `override "pilot.soak": want WAVE.FIELD=VALUE`},
		// Checked across fields as a file is, naming where the other value came from.
		{"*.min_healthy_time=20m", `override "*.min_healthy_time=20m": careful.yaml:5: waves[1].min_healthy_time: 20m is longer than healthy_deadline 10m`},
		{"early.acks.deadline=1h", `override "early.acks.deadline=1h": careful.yaml:13: waves[1].acks.remind: 12h is past the deadline 1h`},
	} {
		err := p.Override(c.kv)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Override(%q) = %v, want %s…", c.kv, err, c.want)
		}
	}
	if after, _ := json.Marshal(p); string(after) != string(before) {
		t.Errorf("a refused override changed the policy:\n%s\n%s", before, after)
	}
}

// FuzzParsePolicy: whatever the parser is given, it answers without panicking, a refusal is
// one line, and what it accepts resolves, renders as JSON that reads back, and summarises.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(careful))
	for _, n := range BuiltinNames() {
		b, _ := BuiltinYAML(n)
		f.Add(b)
	}
	f.Add([]byte("name: p\nwaves:\n  - &a {name: a}\n  - {<<: *a, name: b}\n"))
	f.Add([]byte("name: p\nwaves: [{name: a, percent: 5%, max_parallel: 1, soak: 1d1h}]"))
	targets := smallFleet(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy("fuzz.yaml", b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		p.Summary()
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Policy
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatalf("JSON does not read back: %v\n%s", err, j)
		}
		plan, err := p.Resolve(targets, Defaults{})
		if err == nil {
			checkPlan(t, p, targets, plan)
		}
	})
}

// FuzzOverride: an override (rollout start --set) is outside input too: it never panics, a
// refusal is one line and leaves the policy as it was, and what it accepts still resolves.
func FuzzOverride(f *testing.F) {
	for _, s := range []string{"pilot.soak=2d", "*.min_healthy_time=5s", "rest.max_parallel=50%", "early.acks.remind=12h", "x", "*.=", "pilot.soak=1d1d"} {
		f.Add(s)
	}
	targets := smallFleet(f)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy("careful.yaml", []byte(careful))
		if err != nil {
			t.Fatal(err)
		}
		before, _ := json.Marshal(p)
		if err := p.Override(s); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			if after, _ := json.Marshal(p); string(after) != string(before) {
				t.Fatalf("a refused override %q changed the policy", s)
			}
			return
		}
		if err := p.validate(); err != nil {
			t.Fatalf("override %q accepted, then the policy is invalid: %v", s, err)
		}
		if plan, err := p.Resolve(targets, Defaults{}); err == nil {
			checkPlan(t, p, targets, plan)
		}
	})
}
