package rollout

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/labels"
)

// Duration is a policy's duration: Go's syntax (90s, 1h30m) plus whole days (7d, 1d12h),
// between 0 and MaxDuration. It travels as that text.
type Duration time.Duration

const day = 24 * time.Hour

// ParseDuration reads "7d", "1d12h", "90s".
func ParseDuration(s string) (Duration, error) {
	const want = "want a duration like 30s, 10m, 2h or 7d"
	if s == "" || len(s) > 32 {
		return 0, fmt.Errorf("%s is not a duration: %s", labels.Quote(s), want)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%s is negative: a duration is 0 or more", labels.Quote(s))
	}
	var d time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.ParseUint(s[:i], 10, 16)
		if err != nil || days > uint64(MaxDuration/day) {
			return 0, fmt.Errorf("%s is not a duration: %s (days as a whole number up to %d)", labels.Quote(s), want, MaxDuration/day)
		}
		d, rest = time.Duration(days)*day, s[i+1:]
	}
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil || strings.ContainsAny(rest, "+-") {
			return 0, fmt.Errorf("%s is not a duration: %s", labels.Quote(s), want)
		}
		if v > MaxDuration {
			v = MaxDuration + 1 // refused below, whatever the days add
		}
		d += v
	}
	if d > MaxDuration {
		return 0, fmt.Errorf("%s is longer than %s, the longest a policy waits", labels.Quote(s), Duration(MaxDuration))
	}
	return Duration(d), nil
}

// String renders the duration as ParseDuration reads it, shortest first: 7d, 1d12h, 1h30m, 90s.
func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0s"
	}
	var b strings.Builder
	if days := v / day; days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		v -= days * day
		if v == 0 {
			return b.String()
		}
	}
	s := v.String()
	// 1h0m0s is 1h; 5m0s is 5m.
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	b.WriteString(s)
	return b.String()
}

// MarshalText renders the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	*d = v
	return err
}

// Percent is a share in hundredths of a percent (1250 is 12.5%), between 0.01% and 100%:
// written 5, 12.5 or "25%", with at most two decimals.
type Percent int

// ParsePercent reads "25", "12.5" or "25%".
func ParsePercent(s string) (Percent, error) {
	v, ok := hundredths(strings.TrimSuffix(s, "%"))
	if !ok || v <= 0 || v > 100_00 {
		return 0, fmt.Errorf("%s is not a percentage: want more than 0 and at most 100, with at most two decimals", labels.Quote(s))
	}
	return Percent(v), nil
}

// hundredths reads a decimal with at most two decimals, as hundredths: "12.5" is 1250.
func hundredths(s string) (int, bool) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || len(whole) > 4 || len(frac) > 2 || dot && frac == "" {
		return 0, false
	}
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	w, _ := strconv.Atoi(whole)
	f := 0
	if frac != "" {
		f, _ = strconv.Atoi(frac)
		if len(frac) == 1 {
			f *= 10
		}
	}
	return w*100 + f, true
}

// Of is the share of n, rounded up: 5% of 30 is 2.
func (p Percent) Of(n int) int { return (int(p)*n + 100_00 - 1) / 100_00 }

// String renders the share as "12.5%".
func (p Percent) String() string {
	s := strconv.Itoa(int(p) / 100)
	if f := int(p) % 100; f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", f), "0")
	}
	return s + "%"
}

// MarshalJSON writes the share as a number of percent: 12.5.
func (p Percent) MarshalJSON() ([]byte, error) {
	return []byte(strings.TrimSuffix(p.String(), "%")), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Percent) UnmarshalJSON(b []byte) error {
	v, err := ParsePercent(strings.Trim(string(b), `"`))
	*p = v
	return err
}

// Limit is a count (3) or a share ("25%") of something a plan counts: a wave's nodes, a
// site's. The zero Limit is unset.
type Limit struct {
	Count   int     // ≥ 1 when set
	Percent Percent // when Count is 0
}

func (l Limit) zero() bool { return l == Limit{} }

// ParseLimit reads "3" or "25%".
func ParseLimit(s string) (Limit, error) {
	bad := fmt.Errorf("%s is not a count ≥ 1 or a percentage", labels.Quote(s))
	if strings.HasSuffix(s, "%") {
		p, err := ParsePercent(s)
		if err != nil {
			return Limit{}, bad
		}
		return Limit{Percent: p}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1_000_000 {
		return Limit{}, bad
	}
	return Limit{Count: n}, nil
}

// Of resolves the limit against n things, within [1, max(n, 1)]: a share rounds up, and a
// count past n is n.
func (l Limit) Of(n int) int {
	v := l.Count
	if v == 0 {
		v = l.Percent.Of(n)
	}
	return max(1, min(v, n))
}

// String renders the limit as ParseLimit reads it.
func (l Limit) String() string {
	if l.Count > 0 || l.zero() {
		return strconv.Itoa(l.Count)
	}
	return l.Percent.String()
}

// MarshalJSON writes a count as a number and a share as a string: 3, "25%".
func (l Limit) MarshalJSON() ([]byte, error) {
	if l.Count > 0 || l.zero() {
		return []byte(strconv.Itoa(l.Count)), nil
	}
	return json.Marshal(l.Percent.String())
}

// UnmarshalJSON reads what MarshalJSON writes.
func (l *Limit) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		s = string(b)
	}
	if s == "0" {
		*l = Limit{}
		return nil
	}
	v, err := ParseLimit(s)
	*l = v
	return err
}
