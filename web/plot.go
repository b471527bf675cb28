package web

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
)

// Plots are drawn on the server as SVG polylines: pages need no plotting script, and a plot is
// a few hundred bytes per line.
const (
	plotW = 600
	plotH = 160
)

// plot is one or more series on shared axes.
type plot struct {
	W, H   int
	Lines  []plotLine
	Min    string // the value axis' ends, formatted
	Max    string
	Unit   string // the value axis' unit: the lines', when they share one
	From   time.Time
	To     time.Time
	Points int // how many points in all: 0 draws an empty state
}

type plotLine struct {
	Name   string
	Unit   string
	Class  string // s0…s5: the line's colour
	Points string // SVG polyline points
	Last   string
	// Dot marks a line of a single point, which a polyline does not draw: its X and Y.
	Dot  bool
	X, Y float64
}

// plotOf scales series to a plot.
func plotOf(series []Series) plot {
	p := plot{W: plotW, H: plotH}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, pt := range s.Points {
			if p.Points == 0 || pt.Time.Before(p.From) {
				p.From = pt.Time
			}
			if p.Points == 0 || pt.Time.After(p.To) {
				p.To = pt.Time
			}
			lo, hi = math.Min(lo, pt.Value), math.Max(hi, pt.Value)
			p.Points++
		}
	}
	if p.Points == 0 {
		return p
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	span := p.To.Sub(p.From)
	for i, s := range series {
		var b strings.Builder
		l := plotLine{Name: s.Name, Unit: s.Unit, Class: "s" + strconv.Itoa(i%6)}
		for _, pt := range s.Points {
			l.X = float64(plotW) / 2
			if span > 0 {
				l.X = float64(pt.Time.Sub(p.From)) / float64(span) * plotW
			}
			l.Y = plotH - (pt.Value-lo)/(hi-lo)*plotH
			fmt.Fprintf(&b, "%.1f,%.1f ", l.X, l.Y)
		}
		l.Points = strings.TrimSpace(b.String())
		l.Dot = len(s.Points) == 1
		if n := len(s.Points); n > 0 {
			l.Last = number(s.Points[n-1].Value)
		}
		p.Lines = append(p.Lines, l)
	}
	p.Min, p.Max, p.Unit = number(lo), number(hi), sharedUnit(series)
	return p
}

// sharedUnit is the unit of every series, or "" when they differ.
func sharedUnit(series []Series) string {
	for _, s := range series[1:] {
		if s.Unit != series[0].Unit {
			return ""
		}
	}
	return series[0].Unit
}

// plotsByUnit draws the series on one plot per unit, in the order the units first come: a value
// axis means one thing (Mbit/s and ms on one axis read as nonsense).
func plotsByUnit(series []Series) []plot {
	var units []string
	byUnit := map[string][]Series{}
	for _, s := range series {
		if _, ok := byUnit[s.Unit]; !ok {
			units = append(units, s.Unit)
		}
		byUnit[s.Unit] = append(byUnit[s.Unit], s)
	}
	out := make([]plot, 0, len(units))
	for _, u := range units {
		out = append(out, plotOf(byUnit[u]))
	}
	return out
}

// number formats a value briefly.
func number(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// heat shades the mesh matrix: 0 for the best value seen, 9 for the worst (lower is better,
// unless the mesh says higher is).
func heat(m Mesh) [][]heatCell {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, row := range m.Value {
		for _, v := range row {
			if !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	out := make([][]heatCell, len(m.Value))
	for i, row := range m.Value {
		out[i] = make([]heatCell, len(row))
		for j, v := range row {
			if math.IsNaN(v) {
				out[i][j] = heatCell{None: true, Text: "–"}
				continue
			}
			shade := 0
			if hi > lo {
				shade = int(math.Round((v - lo) / (hi - lo) * 9))
			}
			if m.HigherBetter {
				shade = 9 - shade
			}
			out[i][j] = heatCell{Text: number(v), Shade: shade}
		}
	}
	return out
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when": func(t any) string {
		switch t := t.(type) {
		case time.Time:
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		}
		return ""
	},
	"bytes": func(n uint64) string {
		const unit = 1024
		if n < unit {
			return strconv.FormatUint(n, 10) + " B"
		}
		div, exp := uint64(unit), 0
		for m := n / unit; m >= unit; m /= unit {
			div *= unit
			exp++
		}
		return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
	},
	"labels": func(m map[string]string) string {
		return labels.Set(m).String()
	},
	"stateClass": func(s string) string {
		switch strings.ToUpper(s) {
		case "OK", "RUNNING", "UP", "DONE", "COMPLETED":
			return "ok"
		case "WARNING", "ROLLED_BACK", "PAUSED", "HALTED", "SOAKING", "AWAITING_APPROVAL", "ROLLING_BACK":
			return "warning"
		case "CRITICAL", "FAILED", "CRASHLOOP", "ABORTED":
			return "critical"
		case "UNKNOWN", "DOWN", "UNREACHABLE":
			return "unreachable"
		}
		return ""
	},
	"rolloutSubject": api.RolloutSubject,
	"eventLine":      eventLine,
	"sub":            func(a, b int) int { return a - b },
}
