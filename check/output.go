package check

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Output is a plugin's output taken apart as the plugin guidelines lay it out:
//
//	TEXT | PERFDATA
//	LONG TEXT LINE 1
//	LONG TEXT LINE 2 | PERFDATA
//	PERFDATA
//
// The first line holds the text and, after a '|', perfdata. Further lines are long text until
// one holds a '|': what follows it, and every line after, is more perfdata.
type Output struct {
	Text string
	Long string
	Perf []Perf
}

// Limits of what one output yields; items past them are dropped.
const (
	MaxPerf     = 256 // perfdata items
	MaxLabelLen = 256 // bytes of a perfdata label
	maxUOMLen   = 16
)

// ParseOutput takes a plugin's standard output apart. It never fails: text that is not valid
// UTF-8 is repaired, and malformed perfdata items are skipped, as Nagios's graphers do.
func ParseOutput(s string) Output {
	s = strings.ToValidUTF8(s, "\uFFFD")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	text, perf, _ := strings.Cut(lines[0], "|")
	perfs := []string{perf}
	var long []string
	inPerf := false
	for _, l := range lines[1:] {
		if inPerf {
			perfs = append(perfs, l)
			continue
		}
		if before, after, ok := strings.Cut(l, "|"); ok {
			long = append(long, before)
			perfs = append(perfs, after)
			inPerf = true
			continue
		}
		long = append(long, l)
	}
	return Output{
		Text: strings.TrimSpace(text),
		Long: strings.Trim(strings.Join(long, "\n"), " \t\n"),
		Perf: ParsePerf(strings.Join(perfs, " ")),
	}
}

// Perf is one item of performance data: 'label'=value[UOM];[warn];[crit];[min];[max].
type Perf struct {
	Label string `json:"label"`
	// Value is the measurement; 0 and meaningless when Unknown.
	Value float64 `json:"value"`
	// Unknown is set when the plugin wrote "U": it could not measure the value.
	Unknown bool `json:"unknown,omitempty"`
	// UOM is the unit: "", s, ms, us, %, B, KB, MB, TB, c, or whatever the plugin wrote.
	UOM  string   `json:"uom,omitempty"`
	Warn *Range   `json:"warn,omitempty"`
	Crit *Range   `json:"crit,omitempty"`
	Min  *float64 `json:"min,omitempty"`
	Max  *float64 `json:"max,omitempty"`
}

// String writes the item back in perfdata syntax, quoting the label when it must be.
func (p Perf) String() string {
	var b strings.Builder
	if strings.ContainsAny(p.Label, " \t\n\r\v\f='") {
		b.WriteString("'" + strings.ReplaceAll(p.Label, "'", "''") + "'")
	} else {
		b.WriteString(p.Label)
	}
	b.WriteByte('=')
	if p.Unknown {
		b.WriteString("U")
	} else {
		b.WriteString(formatNumber(p.Value))
	}
	b.WriteString(p.UOM)
	fields := []string{"", "", "", ""}
	if p.Warn != nil {
		fields[0] = p.Warn.String()
	}
	if p.Crit != nil {
		fields[1] = p.Crit.String()
	}
	if p.Min != nil {
		fields[2] = formatNumber(*p.Min)
	}
	if p.Max != nil {
		fields[3] = formatNumber(*p.Max)
	}
	for len(fields) > 0 && fields[len(fields)-1] == "" {
		fields = fields[:len(fields)-1]
	}
	for _, f := range fields {
		b.WriteString(";" + f)
	}
	return b.String()
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// ParsePerf parses perfdata: items separated by whitespace, a label quoted with ' when it holds
// spaces, '=' or quotes (a doubled quote stands for one inside it). Malformed items are skipped; at most
// MaxPerf items are returned.
func ParsePerf(s string) []Perf {
	var out []Perf
	i := 0
	skipToken := func() {
		for i < len(s) && !isSpace(s[i]) {
			i++
		}
	}
	for len(out) < MaxPerf {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			break
		}
		var label string
		if s[i] == '\'' {
			var b strings.Builder
			j, closed := i+1, false
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(s[j])
				j++
			}
			i = j
			if !closed {
				break // an unclosed quote swallows the rest: nothing more can be read safely
			}
			if i >= len(s) || s[i] != '=' {
				skipToken()
				continue
			}
			label = b.String()
		} else {
			j := i
			for j < len(s) && s[j] != '=' && !isSpace(s[j]) {
				j++
			}
			if j >= len(s) || s[j] != '=' {
				i = j
				skipToken()
				continue
			}
			label, i = s[i:j], j
		}
		i++ // the '='
		start := i
		skipToken()
		if p, ok := parseItem(label, s[start:i]); ok {
			out = append(out, p)
		}
	}
	return out
}

// parseItem reads value[UOM];[warn];[crit];[min];[max] for label; fields past max are ignored.
func parseItem(label, data string) (Perf, bool) {
	if label == "" || len(label) > MaxLabelLen {
		return Perf{}, false
	}
	p := Perf{Label: label}
	fields := strings.Split(data, ";")
	if fields[0] == "U" {
		p.Unknown = true
	} else {
		n := numberPrefix(fields[0])
		if n == 0 {
			return Perf{}, false
		}
		v, err := strconv.ParseFloat(fields[0][:n], 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return Perf{}, false
		}
		p.Value, p.UOM = v, fields[0][n:]
		if len(p.UOM) > maxUOMLen || strings.ContainsAny(p.UOM, "0123456789+-.") {
			return Perf{}, false
		}
	}
	field := func(k int) string {
		if k < len(fields) {
			return fields[k]
		}
		return ""
	}
	if f := field(1); f != "" {
		if r, err := ParseRange(f); err == nil {
			p.Warn = &r
		}
	}
	if f := field(2); f != "" {
		if r, err := ParseRange(f); err == nil {
			p.Crit = &r
		}
	}
	if v, ok := parseNumber(field(3)); ok {
		p.Min = &v
	}
	if v, ok := parseNumber(field(4)); ok {
		p.Max = &v
	}
	return p, true
}

// numberPrefix returns the length of the decimal number s starts with ([+-]digits[.digits][e[+-]digits]),
// 0 when it starts with none.
func numberPrefix(s string) int {
	i, digits := 0, 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i, digits = i+1, digits+1
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return 0
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && s[j] >= '0' && s[j] <= '9' {
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			i = j
		}
	}
	return i
}

// parseNumber parses s when all of it is a finite decimal number.
func parseNumber(s string) (float64, bool) {
	if s == "" || numberPrefix(s) != len(s) {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// formatNumber writes v so that parseNumber reads it back exactly, without an exponent for
// everyday magnitudes.
func formatNumber(v float64) string {
	if a := math.Abs(v); a == 0 || (a >= 1e-6 && a < 1e21) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Range is a Nagios threshold range. Outside ranges (the default) alert when a value falls
// outside [Start, End]; inside ranges ("@...") alert when it falls within. Start may be -Inf
// ("~") and End +Inf (nothing after the colon).
type Range struct {
	Start, End float64
	Inside     bool
}

// ParseRange reads a range: "10" (0..10), "10:" (10..∞), "~:10" (-∞..10), "10:20", and any of
// them after '@' for an inside range.
func ParseRange(s string) (Range, error) {
	orig := s
	r := Range{End: math.Inf(1)}
	if strings.HasPrefix(s, "@") {
		r.Inside, s = true, s[1:]
	}
	start, end, colon := strings.Cut(s, ":")
	if !colon {
		start, end = "", start
		if end == "" {
			return Range{}, fmt.Errorf("invalid range %q: empty", orig)
		}
	}
	switch start {
	case "~":
		r.Start = math.Inf(-1)
	case "":
	default:
		v, ok := parseNumber(start)
		if !ok {
			return Range{}, fmt.Errorf("invalid range %q: start is not a number", orig)
		}
		r.Start = v
	}
	if end != "" {
		v, ok := parseNumber(end)
		if !ok {
			return Range{}, fmt.Errorf("invalid range %q: end is not a number", orig)
		}
		r.End = v
	}
	if r.Start > r.End {
		return Range{}, fmt.Errorf("invalid range %q: start is above end", orig)
	}
	return r, nil
}

// String writes the range in Nagios syntax, the shortest form that ParseRange reads back.
func (r Range) String() string {
	var b strings.Builder
	if r.Inside {
		b.WriteByte('@')
	}
	switch {
	case math.IsInf(r.Start, -1):
		b.WriteString("~:")
	case r.Start != 0 || math.IsInf(r.End, 1):
		b.WriteString(formatNumber(r.Start) + ":")
	}
	if !math.IsInf(r.End, 1) {
		b.WriteString(formatNumber(r.End))
	}
	return b.String()
}

// Alerts reports whether v is a value the range alerts on.
func (r Range) Alerts(v float64) bool {
	in := v >= r.Start && v <= r.End
	return in == r.Inside
}

// MarshalText writes the range in Nagios syntax: JSON cannot carry the infinities.
func (r Range) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a range in Nagios syntax.
func (r *Range) UnmarshalText(b []byte) error {
	v, err := ParseRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
