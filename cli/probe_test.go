package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

func TestProbeUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "mesh"}, "ferry: probe mesh: give --selector"},
		{[]string{"probe", "mesh", "--selector", "site=ams", "--bytes", "1GiB"}, `ferry: probe mesh: --bytes: invalid size "1GiB": want N, NKiB or NMiB, at most 256 MiB`},
		{[]string{"probe", "mesh", "--selector", "site=ams", "--bytes", "300MiB"}, `ferry: probe mesh: --bytes: invalid size "300MiB"`},
		{[]string{"probe", "mesh", "--selector", "site=ams", "--bytes", "1KiB"}, "ferry: probe mesh: invalid bytes 1024: want 64 KiB to 256 MiB"},
		{[]string{"probe", "mesh", "--selector", "site=ams", "--duration", "2h"}, "ferry: probe mesh: invalid duration 2h0m0s: want 1s to 1m0s"},
		{[]string{"probe", "show", "x"}, `ferry: probe show: invalid id "x"`},
	} {
		out, errOut, code := ferryWith(context.Background(), noEnv, tt.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tt.want) {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
	}
}

// ferry probe mesh --wait measures between real agents and shows the matrix; show -o json has
// every directed pair; list has the probe; a selector of one node is refused in one line.
func TestProbeMesh(t *testing.T) {
	f := newFleet(t)
	f.agent("n1", "ams", nil)
	f.agent("n2", "ams", nil)
	out := f.mustFerry("probe", "mesh", "--selector", "site=ams", "--bytes", "256KiB", "--duration", "5s", "--wait")
	t.Logf("ferry probe mesh --wait:\n%s", out)
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "probe 1: completed, 2 nodes (site=ams), 1 of 1 connections measured, 0 failed") ||
		!strings.HasPrefix(lines[3], "FROM \\ TO  n1") || !strings.Contains(lines[4], " / ") || !strings.HasPrefix(lines[5], "n2") {
		t.Fatalf("matrix:\n%s", out)
	}
	var p api.Probe
	if err := json.Unmarshal([]byte(f.mustFerry("probe", "show", "1", "-o", "json")), &p); err != nil || len(p.Pairs) != 2 || p.Pairs[0].From != "n1" || p.Pairs[0].To != "n2" || p.Pairs[0].Mbps <= 0 || p.Pairs[1].RTTms.Avg <= 0 {
		t.Fatalf("show: %+v, %v", p, err)
	}
	if out := f.mustFerry("probe", "list"); !strings.Contains(out, "1   completed  site=ams  2      1            1         0") {
		t.Fatalf("list:\n%s", out)
	}
	if _, errOut, code := f.ferry("probe", "mesh", "--selector", "role=n1"); code != 1 || errOut != "ferry: selector \"role=n1\" matches 0 node(s); a mesh probe measures between at least 2\n" {
		t.Fatalf("one node: exit %d, stderr %q", code, errOut)
	}
}
