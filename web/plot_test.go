package web

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPlotOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := plotOf([]Series{
		{Name: "rtt", Unit: "ms", Points: []Point{{t0, 10}, {t0.Add(time.Minute), 20}, {t0.Add(2 * time.Minute), 40}}},
		{Name: "loss", Points: []Point{{t0.Add(time.Minute), 0}}},
	})
	if p.Points != 4 || len(p.Lines) != 2 || p.Min != "0" || p.Max != "40" || !p.From.Equal(t0) || !p.To.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("plot %+v", p)
	}
	// Time runs left to right over the width, values bottom to top over the height.
	if got := p.Lines[0].Points; got != "0.0,120.0 300.0,80.0 600.0,0.0" {
		t.Errorf("rtt points %q", got)
	}
	if p.Lines[0].Last != "40" || p.Lines[0].Class == p.Lines[1].Class {
		t.Errorf("lines %+v", p.Lines)
	}
	if empty := plotOf(nil); empty.Points != 0 || len(empty.Lines) != 0 {
		t.Errorf("an empty plot: %+v", empty)
	}
}

func TestHeat(t *testing.T) {
	h := heat(Mesh{Nodes: []string{"a", "b"}, Value: [][]float64{{math.NaN(), 1}, {10, 5.5}}})
	if !h[0][0].None || h[0][1].Shade != 0 || h[1][0].Shade != 9 || h[1][1].Shade != 5 || !strings.Contains(h[1][1].Text, "5.5") {
		t.Fatalf("heat %+v", h)
	}
	// Throughput: the highest is the best, shaded 0.
	h = heat(Mesh{Nodes: []string{"a", "b"}, HigherBetter: true, Value: [][]float64{{math.NaN(), 1}, {10, 5.5}}})
	if h[0][1].Shade != 9 || h[1][0].Shade != 0 {
		t.Fatalf("heat of throughput %+v", h)
	}
}

// A plot's value axis names its unit; a line of one point draws a marker; Mbit/s and ms go on
// plots of their own.
func TestPlotUnitsAndMarkers(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	svg := func(p plot) string {
		t.Helper()
		var b strings.Builder
		if err := pages["stats"].ExecuteTemplate(&b, "plot", p); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	one := plotOf([]Series{{Name: "disk", Unit: "%", Points: []Point{{t0, 42}}}})
	if out := svg(one); !strings.Contains(out, `<span class="axis">%: 0 – 42,`) || !strings.Contains(out, `disk 42</span>`) || !strings.Contains(out, `<path class="point s0" d="M300.0 0.0h0"/>`) {
		t.Errorf("a single point of %%:\n%s", out)
	}
	two := plotOf([]Series{{Name: "rtt", Unit: "ms", Points: []Point{{t0, 1}, {t0.Add(time.Minute), 2}}}})
	if out := svg(two); strings.Contains(out, `class="point`) || !strings.Contains(out, `<span class="axis">ms: 0 – 2,`) {
		t.Errorf("two points in ms:\n%s", out)
	}

	probes := plotsByUnit([]Series{
		{Name: "mean throughput", Unit: "Mbit/s", Points: []Point{{t0, 900}, {t0.Add(time.Minute), 940}}},
		{Name: "mean round trip", Unit: "ms", Points: []Point{{t0, 0.4}, {t0.Add(time.Minute), 0.5}}},
	})
	if len(probes) != 2 || probes[0].Unit != "Mbit/s" || probes[1].Unit != "ms" || probes[0].Max != "940" || probes[1].Max != "0.5" {
		t.Fatalf("probe plots %+v", probes)
	}
	mixed := plotOf([]Series{{Name: "a", Unit: "ms", Points: []Point{{t0, 1}}}, {Name: "b", Unit: "s", Points: []Point{{t0, 1}}}})
	if mixed.Unit != "" {
		t.Errorf("lines of two units share the axis unit %q", mixed.Unit)
	}
}
