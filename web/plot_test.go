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
