package rollout

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/release"
)

// Each built-in policy is a file like any other: it parses as a user's copy would, and is the
// default of the class it is named after.
func TestBuiltins(t *testing.T) {
	for _, name := range BuiltinNames() {
		p, err := ForClass(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Name != name {
			t.Errorf("built-in %s is named %s", name, p.Name)
		}
		b, _ := BuiltinYAML(name)
		copied, err := ParsePolicy("copy.yaml", b)
		if err != nil {
			t.Fatalf("a copy of %s: %v", name, err)
		}
		j1, _ := json.Marshal(p)
		j2, _ := json.Marshal(copied)
		if string(j1) != string(j2) {
			t.Errorf("a copy of %s parses otherwise:\n%s\n%s", name, j1, j2)
		}
	}
	if _, err := ForClass("patch"); err == nil || !strings.Contains(err.Error(), "want minor, major, breaking") {
		t.Errorf("ForClass(patch): %v", err)
	}
	if _, err := Builtin("careful"); err == nil || !strings.Contains(err.Error(), "no built-in policy \"careful\"") {
		t.Errorf("Builtin(careful): %v", err)
	}
}

func plan(t *testing.T, name string, ts []Target) Plan {
	t.Helper()
	p, err := Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := p.Resolve(ts, Defaults{MinHealthyTime: 10 * time.Second, HealthyDeadline: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, p, ts, pl)
	return pl
}

func waveNames(p Plan) []string {
	var s []string
	for _, w := range p.Waves {
		s = append(s, w.Name)
	}
	return s
}

func TestMinor(t *testing.T) {
	ts := fleet(t, "cern:1:2", "lip:2:10", "ral:2:8", "cnaf:3:6")
	p := plan(t, release.ClassMinor, ts)
	if !slices.Equal(waveNames(p), []string{"pilot", "half", "rest"}) || p.OnFailure != OnFailureRollback {
		t.Fatalf("plan %+v", p)
	}
	pilot, half := p.Waves[0], p.Waves[1]
	if names(pilot.Nodes) != "cern-01 cern-02" || pilot.Soak != 7*24*time.Hour || pilot.MaxParallel != 1 || pilot.Approvals != 0 {
		t.Errorf("pilot %+v", pilot)
	}
	// Half of 26 is 13, over the three other sites.
	if len(half.Nodes) != 13 || half.MaxParallel != 2 || half.MaxUnavailablePerSite["lip"] != 3 || half.MaxUnavailablePerSite["cnaf"] != 2 {
		t.Errorf("half %+v", half)
	}
	// A fleet without a tier-1 site has no pilot.
	p = plan(t, release.ClassMinor, fleet(t, "lip:2:3", "ral:3:2"))
	if !slices.Equal(waveNames(p), []string{"half", "rest"}) || !slices.Equal(p.Skipped, []string{"pilot"}) {
		t.Errorf("plan without tier-1 sites %+v", p)
	}
}

func TestMajor(t *testing.T) {
	p := plan(t, release.ClassMajor, fleet(t, "cern:1:2", "lip:2:10"))
	pilot, half, rest := p.Waves[0], p.Waves[1], p.Waves[2]
	if pilot.Approvals != 1 || pilot.ApprovalRole != "admin" || pilot.Acks == nil || pilot.Acks.Deadline != 3*24*time.Hour ||
		pilot.FeedbackWindow != 14*24*time.Hour || pilot.FeedbackRemind != 3*24*time.Hour {
		t.Errorf("pilot %+v", pilot)
	}
	if half.Approvals != 1 || rest.Approvals != 0 {
		t.Errorf("going to production is not approved: %+v", p)
	}
}

func TestBreaking(t *testing.T) {
	// Only the sites that opted in, each wave approved; the rest stay, listed.
	ts := fleet(t, "cern:1:3", "lip:2:12:pilot=breaking", "ral:2:4:pilot=breaking")
	p := plan(t, release.ClassBreaking, ts)
	if !slices.Equal(waveNames(p), []string{"first", "opted-in"}) || p.OnFailure != OnFailurePause || names(p.Left) != "cern-01 cern-02 cern-03" {
		t.Fatalf("plan %+v", p)
	}
	for _, w := range p.Waves {
		if w.Approvals != 1 {
			t.Errorf("wave %s needs no approval", w.Name)
		}
	}
	if names(p.Waves[0].Nodes) != "lip-01 ral-01" {
		t.Errorf("first wave %s", names(p.Waves[0].Nodes))
	}
	// Without a site that opted in, nothing moves: the plan is refused and says how to opt in.
	b, _ := Builtin(release.ClassBreaking)
	_, err := b.Resolve(fleet(t, "cern:1:3"), Defaults{})
	if err == nil || !strings.Contains(err.Error(), `waves[0].selector: "pilot=breaking" matches none of the 3 target nodes`) || !strings.Contains(err.Error(), "ferry site label") {
		t.Errorf("breaking without opted-in sites: %v", err)
	}
}
